package localkubelet

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRewriterValue(t *testing.T) {
	rw := newRewriter([]mount{
		{containerPath: "/etc/edgepool/config", hostPath: "/tmp/p/volumes/config"},
		{containerPath: "/etc/edgepool", hostPath: "/tmp/p/volumes/root"},
	}, map[int32]int{5432: 21001, 8080: 21002})
	for _, tc := range []struct{ in, want string }{
		{"/etc/edgepool/config/pooler.json", "/tmp/p/volumes/config/pooler.json"},
		{"/etc/edgepool/config", "/tmp/p/volumes/config"},
		{"--config=/etc/edgepool/config/pooler.json", "--config=/tmp/p/volumes/config/pooler.json"},
		{"/etc/edgepool/tls/ca.crt", "/tmp/p/volumes/root/tls/ca.crt"}, // longest mount wins
		{"/etc/edgepoolx/a", "/etc/edgepoolx/a"},                       // not below the mount
		{":5432", "127.0.0.1:21001"},
		{"0.0.0.0:8080", "127.0.0.1:21002"},
		{"[::]:5432", "127.0.0.1:21001"},
		{"--listen=:8080", "--listen=127.0.0.1:21002"},
		{"db.internal:5432", "db.internal:5432"}, // a remote address is not a listen address
		{":9999", ":9999"},                       // not a container port
		{"pooler", "pooler"},
	} {
		if got := rw.value(tc.in); got != tc.want {
			t.Errorf("value(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRewriterArgsReportsEveryChange(t *testing.T) {
	rw := newRewriter([]mount{{containerPath: "/etc/edgepool/config", hostPath: "/w/config"}}, nil)
	got, changes := rw.args([]string{"pooler", "--config", "/etc/edgepool/config/pooler.json"})
	if want := []string{"pooler", "--config", "/w/config/pooler.json"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("args = %q, want %q", got, want)
	}
	want := []rewrite{{Where: "args[2]", From: "/etc/edgepool/config/pooler.json", To: "/w/config/pooler.json"}}
	if !reflect.DeepEqual(changes, want) {
		t.Fatalf("changes = %+v, want %+v", changes, want)
	}
}

func TestRewriterFile(t *testing.T) {
	rw := newRewriter([]mount{{containerPath: "/etc/edgepool/tls", hostPath: "/w/tls"}},
		map[int32]int{5432: 21001, 8443: 21003})
	in := []byte(`{"listen":{"postgres":":5432","http":":8443"},"tls":{"certFile":"/etc/edgepool/tls/tls.crt"},` +
		`"upstream":{"host":"db","port":5432,"password":"s3cret"},"pool":{"size":12345678901234567890}}`)
	out, changes := rw.file("config", "pooler.json", in)
	if len(changes) != 3 {
		t.Fatalf("changes = %+v, want 3", changes)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	listen := doc["listen"].(map[string]any)
	if listen["postgres"] != "127.0.0.1:21001" || listen["http"] != "127.0.0.1:21003" {
		t.Errorf("listen = %v", listen)
	}
	if doc["tls"].(map[string]any)["certFile"] != "/w/tls/tls.crt" {
		t.Errorf("tls = %v", doc["tls"])
	}
	if up := doc["upstream"].(map[string]any); up["port"] != float64(5432) || up["password"] != "s3cret" {
		t.Errorf("upstream changed: %v", up)
	}
	if bytes.Equal(out, in) {
		t.Error("output equals input")
	}
	// Numbers keep their exact text.
	if !json.Valid(out) || !bytes.Contains(out, []byte("12345678901234567890")) {
		t.Errorf("number not kept exactly: %s", out)
	}

	// Not JSON, or JSON without anything to rewrite: bytes untouched.
	pem := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	if out, ch := rw.file("tls", "tls.crt", pem); !bytes.Equal(out, pem) || ch != nil {
		t.Errorf("certificate changed")
	}
	plain := []byte(`{"a": "b"}`)
	if out, ch := rw.file("c", "x.json", plain); !bytes.Equal(out, plain) || ch != nil {
		t.Errorf("untouched JSON re-encoded")
	}
}

func TestVolumeDirSwapsDataAtomically(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	v := &volumeDir{dir: dir}
	changed, err := v.write(map[string][]byte{"pooler.json": []byte("v1"), "old": []byte("x")}, 0o600)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	first, _ := os.Readlink(filepath.Join(dir, "..data"))
	if link, _ := os.Readlink(filepath.Join(dir, "pooler.json")); link != "..data/pooler.json" {
		t.Fatalf("pooler.json -> %q, want ..data/pooler.json", link)
	}
	if changed, _ := v.write(map[string][]byte{"pooler.json": []byte("v1"), "old": []byte("x")}, 0o600); changed {
		t.Fatal("identical write reported a change")
	}
	if _, err := v.write(map[string][]byte{"pooler.json": []byte("v2")}, 0o600); err != nil {
		t.Fatal(err)
	}
	second, _ := os.Readlink(filepath.Join(dir, "..data"))
	if second == first {
		t.Fatal("..data not swapped")
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("previous version %s not removed", first)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "pooler.json")); string(b) != "v2" {
		t.Errorf("pooler.json = %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "old")); !os.IsNotExist(err) {
		t.Error("removed key still linked")
	}
	if fi, _ := os.Stat(filepath.Join(dir, "pooler.json")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
}
