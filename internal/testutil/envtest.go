package testutil

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/edgepool/edgepool/internal/envtestbin"
)

// EnvtestAssets returns the directory of envtest's kube-apiserver and etcd, for
// envtest.Environment.BinaryAssetsDirectory: KUBEBUILDER_ASSETS when set (make test sets it),
// otherwise what hack/envtest-binaries.sh of this module builds or finds in its cache.
func EnvtestAssets() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return envtestbin.Dir(root, os.Stderr)
}

// moduleRoot is the directory holding go.mod, from the test's working directory (its package
// directory) upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
