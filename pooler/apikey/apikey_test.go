package apikey

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"strings"
	"testing"
)

func TestGenerateIsPrefixedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, Prefix) || len(k) != len(Prefix)+43 {
			t.Fatalf("bad key %q", k)
		}
		if seen[k] {
			t.Fatal("duplicate key")
		}
		seen[k] = true
	}
}

func TestDigestAndFingerprint(t *testing.T) {
	d := Digest("ep_test")
	if len(d) != 64 || Fingerprint("ep_test") != d[:8] {
		t.Fatalf("digest %q fingerprint %q", d, Fingerprint("ep_test"))
	}
	if !MatchDigest("ep_test", d) || MatchDigest("ep_other", d) || MatchDigest("ep_test", "zz") || MatchDigest("ep_test", d[:10]) {
		t.Fatal("MatchDigest")
	}
}

func TestSCRAMVerifierRoundTripAndProof(t *testing.T) {
	salt := []byte("0123456789abcdef")
	v, err := NewSCRAMVerifier("ep_key", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	s := v.String()
	if !strings.HasPrefix(s, "SCRAM-SHA-256$4096:") {
		t.Fatalf("format %q", s)
	}
	back, err := ParseSCRAMVerifier(s)
	if err != nil || back.String() != s {
		t.Fatalf("round trip: %v %q", err, back.String())
	}
	// A client that knows the key computes a proof the verifier accepts.
	salted, _ := pbkdf2.Key(sha256.New, "ep_key", salt, 4096, 32)
	mac := func(k, m []byte) []byte { h := hmac.New(sha256.New, k); h.Write(m); return h.Sum(nil) }
	clientKey := mac(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	authMsg := []byte("n=,r=abc,r=abcdef,s=x,i=4096,c=biws,r=abcdef")
	sig := mac(stored[:], authMsg)
	proof := make([]byte, 32)
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	if !back.VerifyClientProof(authMsg, proof) {
		t.Fatal("valid proof refused")
	}
	proof[0] ^= 1
	if back.VerifyClientProof(authMsg, proof) || back.VerifyClientProof(authMsg, proof[:5]) {
		t.Fatal("bad proof accepted")
	}
	if got, want := back.ServerSignature(authMsg), mac(mac(salted, []byte("Server Key")), authMsg); !hmac.Equal(got, want) {
		t.Fatal("server signature")
	}
	if _, err := NewSCRAMVerifier("k", salt, 0); err == nil {
		t.Fatal("zero iterations accepted")
	}
}

func TestParseSCRAMVerifierRejectsMalformed(t *testing.T) {
	for _, bad := range []string{"", "md5abc", "SCRAM-SHA-256$", "SCRAM-SHA-256$x:c2FsdA==$a:b",
		"SCRAM-SHA-256$4096:c2FsdA==$a:b", "SCRAM-SHA-256$4096:!!$a:b", "SCRAM-SHA-256$4096:c2FsdA==",
		"SCRAM-SHA-256$4096c2FsdA==$a:b"} {
		if _, err := ParseSCRAMVerifier(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
