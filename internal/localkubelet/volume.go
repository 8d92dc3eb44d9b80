package localkubelet

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// volumeDir holds the files of one Secret/ConfigMap volume with the kubelet's layout, so a
// process that watches its mounted files sees updates the way it would in a pod:
//
//	dir/..2026_11_26_14_00_00.123456789/<key>   the files of one version
//	dir/..data -> ..2026_11_26_14_00_00.123456789
//	dir/<key>  -> ..data/<key>
//
// An update writes a new timestamped directory, points a temporary symlink at it and renames
// that symlink over ..data (one atomic rename), then removes the previous version.
type volumeDir struct {
	dir     string
	current map[string][]byte // what ..data holds now; nil before the first write
}

// write makes the volume hold exactly files (key → content, written with mode). It reports
// whether anything changed.
func (v *volumeDir) write(files map[string][]byte, mode os.FileMode) (bool, error) {
	if v.current != nil && sameFiles(v.current, files) {
		return false, nil
	}
	if err := os.MkdirAll(v.dir, 0o755); err != nil {
		return false, err
	}
	version := ".." + time.Now().UTC().Format("2006_01_02_15_04_05.000000000")
	versionDir := filepath.Join(v.dir, version)
	if err := os.Mkdir(versionDir, 0o755); err != nil {
		return false, fmt.Errorf("volume version dir: %w", err)
	}
	for _, key := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(versionDir, key)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(p, files[key], mode); err != nil {
			return false, fmt.Errorf("volume file %s: %w", key, err)
		}
	}
	dataLink := filepath.Join(v.dir, "..data")
	oldTarget, _ := os.Readlink(dataLink)
	tmpLink := filepath.Join(v.dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(version, tmpLink); err != nil {
		return false, err
	}
	if err := os.Rename(tmpLink, dataLink); err != nil {
		return false, fmt.Errorf("swap ..data: %w", err)
	}
	// Top-level names point through ..data; only keys that appear or disappear need a change.
	for key := range files {
		top := strings.SplitN(key, "/", 2)[0]
		link := filepath.Join(v.dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
			return false, err
		}
	}
	for key := range v.current {
		top := strings.SplitN(key, "/", 2)[0]
		if !hasTopLevel(files, top) {
			_ = os.Remove(filepath.Join(v.dir, top))
		}
	}
	if oldTarget != "" && oldTarget != version {
		_ = os.RemoveAll(filepath.Join(v.dir, oldTarget))
	}
	v.current = maps.Clone(files)
	return true, nil
}

func hasTopLevel(files map[string][]byte, top string) bool {
	for key := range files {
		if strings.SplitN(key, "/", 2)[0] == top {
			return true
		}
	}
	return false
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !bytes.Equal(va, vb) {
			return false
		}
	}
	return true
}
