package main

import (
	"testing"
	"time"

	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/config"
)

func TestKeygenEntryAcceptsItsKey(t *testing.T) {
	entry, key, err := apikey.NewConfigKey("ci")
	if err != nil {
		t.Fatal(err)
	}
	if entry.Name != "ci" || len(entry.Verifiers) != 1 || entry.Verifiers[0].Fingerprint == "" {
		t.Fatalf("entry %+v", entry)
	}
	ring, err := auth.NewKeyring([]config.Key{entry})
	if err != nil {
		t.Fatal(err)
	}
	_, good := ring.CheckPassword("ci", key, time.Now())
	_, bad := ring.CheckPassword("ci", key+"x", time.Now())
	if !good || bad {
		t.Fatal("keygen entry does not match its key")
	}
}
