// Package envtestbin finds envtest's kube-apiserver and etcd, for the tests and for the local
// demo (internal/localenv). It does not import "testing".
package envtestbin

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Dir returns the directory of kube-apiserver and etcd: KUBEBUILDER_ASSETS when set, otherwise
// what repoRoot/hack/envtest-binaries.sh prints (it builds them from the Go module proxy on first
// use, writing its progress to progress, and caches them in ~/.cache/edgepool/envtest).
func Dir(repoRoot string, progress io.Writer) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "envtest-binaries.sh"))
	cmd.Stderr = progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/envtest-binaries.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
