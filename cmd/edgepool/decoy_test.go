package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/pooler/config"
)

// TestReplicasAnswerTheSameSaltForUnknownNames: limit proved — auth.decoySecret. Two pooler
// processes with the same config (two replicas) answer the same SCRAM salt for a key name that
// does not exist, as they do for one that does; without the shared secret they would not, and
// a prober could tell real names apart by asking two replicas.
func TestReplicasAnswerTheSameSaltForUnknownNames(t *testing.T) {
	pg := testpg.Start(t)
	base, _ := processConfig(t, pg)
	replica := func(decoySecret string) *poolerProcess {
		cfg := *base
		cfg.Listen = config.Listen{Postgres: freeAddr(t), Admin: freeAddr(t)}
		cfg.Auth.DecoySecret = decoySecret
		return startPoolerProcess(t, &cfg)
	}
	a, b := replica("the-pool's-shared-decoy-secret"), replica("the-pool's-shared-decoy-secret")
	unshared := replica("")
	for _, name := range []string{"app", "no-such-key", "ci"} {
		sa, sb := scramSalt(t, a.cfg.Listen.Postgres, name), scramSalt(t, b.cfg.Listen.Postgres, name)
		if sa != sb {
			t.Errorf("name %q: replicas answer salts %s and %s", name, sa, sb)
		}
		if name != "app" && scramSalt(t, unshared.cfg.Listen.Postgres, name) == sa {
			t.Errorf("name %q: a pooler without the shared secret answers the same decoy salt", name)
		}
	}
}

// scramSalt starts a SCRAM login as name and returns the salt the server announces.
func scramSalt(t *testing.T, addr, name string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": name, "database": "postgres"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := fe.Receive(); err != nil {
		t.Fatal(err)
	} else if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("got %T, want AuthenticationSASL", msg)
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=clientnonce0123456789")})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	cont, ok := msg.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("got %T, want AuthenticationSASLContinue", msg)
	}
	for _, attr := range strings.Split(string(cont.Data), ",") {
		if s, ok := strings.CutPrefix(attr, "s="); ok {
			return s
		}
	}
	t.Fatalf("no salt in %q", cont.Data)
	return ""
}
