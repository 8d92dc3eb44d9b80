package controllers

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func runtimeToUnstructured(obj any) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	m["apiVersion"] = "pooling.edgepool.dev/v1alpha1"
	m["kind"] = "ConnectionPool"
	return m, nil
}

// TestKustomizeOutputAppliesToAPIServer renders config/default and config/samples with the real
// kubectl and has the envtest API server validate them (kubectl apply --dry-run=server).
func TestKustomizeOutputAppliesToAPIServer(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is required for this test: %v", err)
	}
	user, err := suite.env.AddUser(envtest.User{Name: "kustomize-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	// Server-side dry run still needs the target namespaces to exist.
	for _, ns := range []string{"edgepool-system"} {
		if err := suite.client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	sampleNS := newNamespace(t)

	for _, tt := range []struct {
		dir  string
		args []string
	}{
		{filepath.Join("..", "config", "default"), nil},
		{filepath.Join("..", "config", "samples"), []string{"-n", sampleNS}},
	} {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			rendered, err := exec.Command(kubectl, "kustomize", tt.dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", tt.dir, stderrOf(err))
			}
			args := append([]string{"--kubeconfig", path, "apply", "--dry-run=server", "-f", "-"}, tt.args...)
			cmd := exec.Command(kubectl, args...)
			cmd.Stdin = bytes.NewReader(rendered)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return err.Error() + ": " + string(ee.Stderr)
	}
	return err.Error()
}
