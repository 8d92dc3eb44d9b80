package controllers

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
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
	kubectl := kubectlAdmin(t)
	// Server-side dry run still needs the target namespaces to exist.
	ensureNamespace(t, "edgepool-system")
	sampleNS := newNamespace(t)

	for _, tt := range []struct {
		dir  string
		args []string
	}{
		{filepath.Join("..", "config", "default"), nil},
		{filepath.Join("..", "config", "samples"), []string{"-n", sampleNS}},
	} {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			rendered, err := exec.Command("kubectl", "kustomize", tt.dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", tt.dir, stderrOf(err))
			}
			out, err := kubectl(rendered, append([]string{"apply", "--dry-run=server", "-f", "-"}, tt.args...)...)
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
