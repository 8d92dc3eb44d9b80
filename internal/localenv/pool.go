package localenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// SampleSchema is the small schema the demo database gets.
const SampleSchema = `
create table products (
  id serial primary key,
  name text not null,
  price_cents integer not null
);
insert into products (name, price_cents) values
  ('edge latte', 450), ('serverless scone', 325), ('regional croissant', 275);
`

// Database is an application database and role created in the throwaway PostgreSQL.
type Database struct {
	Name, User, Password string
}

// CreateDatabase creates a role owning a new database and runs schema in it as that role.
func (e *Env) CreateDatabase(ctx context.Context, name, user, schema string) (Database, error) {
	db := Database{Name: name, User: user, Password: randomHex(12)}
	for _, stmt := range []string{
		fmt.Sprintf("create role %s login password '%s'", user, db.Password),
		fmt.Sprintf("create database %s owner %s", name, user), // not in a transaction: its own Exec
	} {
		if err := e.Postgres.ExecErr(stmt); err != nil {
			return db, fmt.Errorf("create database %s: %w", name, err)
		}
	}
	if schema == "" {
		return db, nil
	}
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, db.Password, e.Postgres.Addr(), name))
	if err != nil {
		return db, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, schema).ReadAll(); err != nil {
		return db, fmt.Errorf("schema: %w", err)
	}
	return db, nil
}

// PointSamplesAt rewrites the config/samples objects to use the local database, logging every
// change: the credentials Secret's username/password, and the pool's upstream host, port and
// sslMode (the throwaway PostgreSQL serves no TLS). Nothing else is changed.
func (e *Env) PointSamplesAt(objs []*unstructured.Unstructured, db Database) {
	for _, o := range objs {
		switch o.GetKind() {
		case "Secret":
			// stringData wins over data on write; drop data's copies so no stale value remains.
			unstructured.RemoveNestedField(o.Object, "data", "username")
			unstructured.RemoveNestedField(o.Object, "data", "password")
			_ = unstructured.SetNestedField(o.Object, db.User, "stringData", "username")
			_ = unstructured.SetNestedField(o.Object, db.Password, "stringData", "password")
			e.log.Info("sample rewritten", "object", "Secret/"+o.GetName(), "field", "stringData.username, stringData.password",
				"to", db.User+" / (the throwaway database's password)")
		case "ConnectionPool":
			host, _, _ := unstructured.NestedString(o.Object, "spec", "upstream", "host")
			port, _, _ := unstructured.NestedInt64(o.Object, "spec", "upstream", "port")
			ssl, _, _ := unstructured.NestedString(o.Object, "spec", "upstream", "sslMode")
			_ = unstructured.SetNestedField(o.Object, e.Postgres.Host, "spec", "upstream", "host")
			_ = unstructured.SetNestedField(o.Object, int64(e.Postgres.Port), "spec", "upstream", "port")
			_ = unstructured.SetNestedField(o.Object, "disable", "spec", "upstream", "sslMode")
			_ = unstructured.SetNestedField(o.Object, db.Name, "spec", "upstream", "database")
			e.log.Info("sample rewritten: spec.upstream", "object", "ConnectionPool/"+o.GetName(),
				"host", fmt.Sprintf("%s → %s", host, e.Postgres.Host),
				"port", fmt.Sprintf("%d → %d", port, e.Postgres.Port),
				"sslMode", ssl+" → disable (the throwaway PostgreSQL serves no TLS)")
		}
	}
}

// WaitReady waits for the pool's Ready condition at its current generation.
func (e *Env) WaitReady(ctx context.Context, namespace, name string, timeout time.Duration) (*poolingv1alpha1.ConnectionPool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var pool poolingv1alpha1.ConnectionPool
	for {
		err := e.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &pool)
		if err == nil {
			c := meta.FindStatusCondition(pool.Status.Conditions, poolingv1alpha1.ConditionReady)
			if c != nil && c.Status == "True" && c.ObservedGeneration == pool.Generation {
				return &pool, nil
			}
		}
		select {
		case <-ctx.Done():
			return &pool, fmt.Errorf("pool %s/%s not Ready within %v (phase %q, conditions %v); operator log: %s",
				namespace, name, timeout, pool.Status.Phase, conditionSummary(pool.Status.Conditions), e.ManagerLog)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func conditionSummary(conds []metav1.Condition) string {
	s := ""
	for _, c := range conds {
		s += fmt.Sprintf("%s=%s(%s: %s) ", c.Type, c.Status, c.Reason, c.Message)
	}
	return s
}

// AppSecret reads the app Secret of one API key.
func (e *Env) AppSecret(ctx context.Context, namespace, pool, key string) (*corev1.Secret, error) {
	var s corev1.Secret
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: pool + "-" + key}, &s)
	return &s, err
}

// WriteCA writes the app Secret's ca.crt to the env's dir and returns its path.
func (e *Env) WriteCA(s *corev1.Secret) (string, error) {
	ca, ok := s.Data["ca.crt"]
	if !ok {
		return "", fmt.Errorf("secret %s has no ca.crt", s.Name)
	}
	p := filepath.Join(e.Dir, s.Name+"-ca.crt")
	return p, os.WriteFile(p, ca, 0o644)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
