package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

func makeKey(t *testing.T, salt []byte, notAfter *time.Time) (string, config.Verifier) {
	t.Helper()
	key, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	v, err := apikey.ConfigVerifier(key, salt, apikey.DefaultIterations)
	if err != nil {
		t.Fatal(err)
	}
	v.NotAfter = notAfter
	return key, v
}

// scramClient runs the client side of SCRAM-SHA-256 against s and returns whether the server
// accepted the key and whether the server signature checked out.
func scramClient(t *testing.T, s *SCRAM, key string) (accepted bool) {
	t.Helper()
	clientFirstBare := "n=,r=clientnonce123"
	serverFirst, err := s.ServerFirst([]byte("n,," + clientFirstBare))
	if err != nil {
		t.Fatal(err)
	}
	var nonce, saltB64 string
	iter := 0
	for _, a := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			saltB64 = a[2:]
		case strings.HasPrefix(a, "i="):
			for _, c := range a[2:] {
				iter = iter*10 + int(c-'0')
			}
		}
	}
	if !strings.HasPrefix(nonce, "clientnonce123") || len(nonce) <= len("clientnonce123") {
		t.Fatalf("bad server nonce %q", nonce)
	}
	salt, _ := base64.StdEncoding.DecodeString(saltB64)
	salted, _ := pbkdf2.Key(sha256.New, key, salt, iter, 32)
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	withoutProof := "c=biws,r=" + nonce
	authMsg := clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	sig := mac(stored[:], authMsg)
	proof := make([]byte, 32)
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	final, ok, err := s.ServerFinal([]byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)))
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		want := "v=" + base64.StdEncoding.EncodeToString(mac(mac(salted, "Server Key"), authMsg))
		if string(final) != want {
			t.Fatalf("server signature %q, want %q", final, want)
		}
	}
	return ok
}

func TestSCRAMAndPassword(t *testing.T) {
	salt, _ := apikey.NewSalt()
	past := time.Now().Add(-time.Hour)
	key1, v1 := makeKey(t, salt, nil)
	key2, v2 := makeKey(t, salt, nil)
	expired, v3 := makeKey(t, salt, &past)
	ring, err := NewKeyring([]config.Key{{Name: "app", Verifiers: []config.Verifier{v1, v2, v3}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name, user, key string
		want            bool
	}{
		{"current key", "app", key1, true},
		{"rotated key", "app", key2, true},
		{"expired key", "app", expired, false},
		{"wrong key", "app", "ep_wrong", false},
		{"unknown name", "nobody", key1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scramClient(t, ring.NewSCRAM(tc.user, now), tc.key); got != tc.want {
				t.Errorf("SCRAM accepted=%v, want %v", got, tc.want)
			}
			if _, got := ring.CheckPassword(tc.user, tc.key, now); got != tc.want {
				t.Errorf("password accepted=%v, want %v", got, tc.want)
			}
		})
	}
	if name, _, ok := ring.FindKey(key2, now); !ok || name != "app" {
		t.Errorf("FindKey = %q %v", name, ok)
	}
	if _, _, ok := ring.FindKey(expired, now); ok {
		t.Error("FindKey found an expired key")
	}
}

func TestUnknownNameGetsStableDecoySalt(t *testing.T) {
	ring, err := NewKeyring(nil)
	if err != nil {
		t.Fatal(err)
	}
	first := func() string {
		out, err := ring.NewSCRAM("ghost", time.Now()).ServerFirst([]byte("n,,n=,r=abc"))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range strings.Split(string(out), ",") {
			if strings.HasPrefix(a, "s=") {
				return a
			}
		}
		t.Fatal("no salt")
		return ""
	}
	if a, b := first(), first(); a != b {
		t.Fatalf("decoy salt changes between attempts: %s vs %s", a, b)
	}
}

func TestRejectsMismatchedSaltsAndMalformedMessages(t *testing.T) {
	s1, _ := apikey.NewSalt()
	s2, _ := apikey.NewSalt()
	_, v1 := makeKey(t, s1, nil)
	_, v2 := makeKey(t, s2, nil)
	if _, err := NewKeyring([]config.Key{{Name: "a", Verifiers: []config.Verifier{v1, v2}}}); err == nil {
		t.Fatal("verifiers with different salts accepted")
	}
	ring, _ := NewKeyring([]config.Key{{Name: "a", Verifiers: []config.Verifier{v1}}})
	for _, bad := range []string{"", "x", "p=tls-server-end-point,,n=,r=a", "n,,n=,m=ext,r=a", "n,,n=", "n,bad,n=,r=a"} {
		if _, err := ring.NewSCRAM("a", time.Now()).ServerFirst([]byte(bad)); err == nil {
			t.Errorf("client-first %q accepted", bad)
		}
	}
	s := ring.NewSCRAM("a", time.Now())
	if _, err := s.ServerFirst([]byte("n,,n=,r=abc")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "c=biws,r=abc,p=AAAA", "c=eSws,r=x,p=AAAA", "no proof"} {
		if _, ok, err := s.ServerFinal([]byte(bad)); ok || err == nil {
			t.Errorf("client-final %q: ok=%v err=%v", bad, ok, err)
		}
	}
}

// TestDecoySecretSharedAcrossReplicas: two keyrings (two pooler processes) with the same decoy
// secret answer the same salt for an unknown name, as they do for a real one; without it (or
// with another secret) the salts differ.
func TestDecoySecretSharedAcrossReplicas(t *testing.T) {
	secret := []byte("shared-decoy-secret-of-the-pool-0123456789")
	a, _ := NewKeyring(nil, DecoySecret(secret))
	b, _ := NewKeyring(nil, DecoySecret(secret))
	other, _ := NewKeyring(nil, DecoySecret([]byte("another secret")))
	salt := func(k *Keyring, name string) string {
		return base64.StdEncoding.EncodeToString(k.lookup(name).salt)
	}
	if salt(a, "ghost") != salt(b, "ghost") {
		t.Fatal("same secret, different decoy salts")
	}
	if salt(a, "ghost") == salt(other, "ghost") || salt(a, "ghost") == salt(a, "ghost2") {
		t.Fatal("decoy salt does not depend on the secret and the name")
	}
}

func TestValidAfterReload(t *testing.T) {
	salt, _ := apikey.NewSalt()
	past, future := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	key1, v1 := makeKey(t, salt, nil)
	key2, v2 := makeKey(t, salt, &future)
	old, _ := NewKeyring([]config.Key{{Name: "app", Verifiers: []config.Verifier{v1, v2}}})
	id1, ok1 := old.CheckPassword("app", key1, time.Now())
	id2, ok2 := old.CheckPassword("app", key2, time.Now())
	if !ok1 || !ok2 {
		t.Fatal("keys not accepted")
	}
	expired := v2
	expired.NotAfter = &past
	for _, tt := range []struct {
		name       string
		keys       []config.Key
		want1      bool
		want2      bool
		wantNameOK bool
	}{
		{"unchanged", []config.Key{{Name: "app", Verifiers: []config.Verifier{v1, v2}}}, true, true, true},
		{"previous key rotated out", []config.Key{{Name: "app", Verifiers: []config.Verifier{v1}}}, true, false, true},
		{"previous key past notAfter", []config.Key{{Name: "app", Verifiers: []config.Verifier{v1, expired}}}, true, false, true},
		{"name removed or disabled", nil, false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ring, err := NewKeyring(tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			if got := ring.Valid("app", id1, time.Now()); got != tt.want1 {
				t.Errorf("key1 valid = %v", got)
			}
			if got := ring.Valid("app", id2, time.Now()); got != tt.want2 {
				t.Errorf("key2 valid = %v", got)
			}
			if ring.Has("app") != tt.wantNameOK {
				t.Errorf("Has = %v", ring.Has("app"))
			}
		})
	}
}

// checkers are the two checks an attacker can time: a whole server-side SCRAM exchange with a
// wrong proof, and a cleartext/bearer key check.
var checkers = map[string]func(k *Keyring, name string){
	"scram": func(k *Keyring, name string) {
		s := k.NewSCRAM(name, time.Now())
		first, err := s.ServerFirst([]byte("n,,n=,r=rOprNGfwEbeRWgbNEkqO"))
		if err != nil {
			panic(err)
		}
		nonce := strings.TrimPrefix(strings.SplitN(string(first), ",", 2)[0], "r=")
		if _, ok, err := s.ServerFinal([]byte("c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")); ok || err != nil {
			panic("wrong proof accepted or malformed")
		}
	},
	"password": func(k *Keyring, name string) {
		if _, ok := k.CheckPassword(name, "ep_wrong-key-of-the-usual-length-0123456789abcdefgh", time.Now()); ok {
			panic("wrong key accepted")
		}
	},
}

func timingRing(tb testing.TB) *Keyring {
	salt, _ := apikey.NewSalt()
	key, err := apikey.Generate()
	if err != nil {
		tb.Fatal(err)
	}
	v, err := apikey.ConfigVerifier(key, salt, apikey.DefaultIterations)
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := NewKeyring([]config.Key{{Name: "known", Verifiers: []config.Verifier{v}}}, DecoySecret([]byte("bench")))
	if err != nil {
		tb.Fatal(err)
	}
	return ring
}

// BenchmarkKeyCheck reports the cost of checking a known and an unknown name (make bench
// territory; the test below is the CI check).
func BenchmarkKeyCheck(b *testing.B) {
	ring := timingRing(b)
	for kind, check := range checkers {
		for _, name := range []string{"known", "unknown"} {
			b.Run(kind+"/"+name, func(b *testing.B) {
				for b.Loop() {
					check(ring, name)
				}
			})
		}
	}
}
