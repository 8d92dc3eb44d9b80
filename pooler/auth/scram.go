package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// MechanismSCRAM is the only SASL mechanism the pooler offers. Channel binding
// (SCRAM-SHA-256-PLUS) is not offered: TLS terminates at the pooler, and clients that merely
// support it send the "y" flag, which is accepted.
const MechanismSCRAM = "SCRAM-SHA-256"

// ErrSCRAMProtocol is returned for malformed SCRAM messages.
var ErrSCRAMProtocol = errors.New("malformed SCRAM message")

// SCRAM is the server side of one SCRAM-SHA-256 exchange (RFC 5802/7677 as PostgreSQL uses it).
// Step order: ServerFirst, then ServerFinal.
type SCRAM struct {
	entry           *keyEntry
	now             time.Time
	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string
	matched         KeyID
}

// NewSCRAM starts an exchange for key name. An unknown name runs the same exchange with a
// decoy salt and always fails at the end.
func (k *Keyring) NewSCRAM(name string, now time.Time) *SCRAM {
	return &SCRAM{entry: k.lookup(name), now: now}
}

// ServerFirst takes the client-first-message (SASLInitialResponse data) and returns the
// server-first-message.
func (s *SCRAM) ServerFirst(clientFirst []byte) ([]byte, error) {
	msg := string(clientFirst)
	// gs2-header: cbind-flag "," [authzid] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return nil, ErrSCRAMProtocol
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return nil, errors.New("SCRAM channel binding is not supported")
	default:
		return nil, ErrSCRAMProtocol
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok || (authzid != "" && !strings.HasPrefix(authzid, "a=")) {
		return nil, ErrSCRAMProtocol
	}
	s.gs2Header = flag + "," + authzid + ","
	s.clientFirstBare = bare
	var clientNonce string
	for _, attr := range strings.Split(bare, ",") {
		if v, ok := strings.CutPrefix(attr, "r="); ok {
			clientNonce = v
		}
		if strings.HasPrefix(attr, "m=") {
			return nil, ErrSCRAMProtocol // mandatory extensions are not supported
		}
	}
	if clientNonce == "" || !printable(clientNonce) {
		return nil, ErrSCRAMProtocol
	}
	var raw [18]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	s.nonce = clientNonce + base64.StdEncoding.EncodeToString(raw[:])
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.entry.salt) +
		",i=" + strconv.Itoa(s.entry.iterations)
	return []byte(s.serverFirst), nil
}

// ServerFinal takes the client-final-message and returns the server-final-message and whether
// the client proved knowledge of a valid key. A false ok with nil error is a wrong key.
func (s *SCRAM) ServerFinal(clientFinal []byte) (serverFinal []byte, ok bool, err error) {
	if s.serverFirst == "" {
		return nil, false, ErrSCRAMProtocol
	}
	msg := string(clientFinal)
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return nil, false, ErrSCRAMProtocol
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil {
		return nil, false, ErrSCRAMProtocol
	}
	var channel, nonce string
	for _, attr := range strings.Split(withoutProof, ",") {
		if v, ok := strings.CutPrefix(attr, "c="); ok {
			channel = v
		} else if v, ok := strings.CutPrefix(attr, "r="); ok {
			nonce = v
		}
	}
	cb, err := base64.StdEncoding.DecodeString(channel)
	if err != nil || string(cb) != s.gs2Header || nonce != s.nonce {
		return nil, false, ErrSCRAMProtocol
	}
	authMessage := []byte(s.clientFirstBare + "," + s.serverFirst + "," + withoutProof)
	var signature []byte
	match := false
	for _, v := range s.entry.verifiers {
		good := v.scram.VerifyClientProof(authMessage, proof)
		if good && v.valid(s.now) {
			match = true
			signature = v.scram.ServerSignature(authMessage)
			s.matched = v.id
		}
	}
	if !match {
		return nil, false, nil
	}
	var out bytes.Buffer
	out.WriteString("v=")
	out.WriteString(base64.StdEncoding.EncodeToString(signature))
	return out.Bytes(), true, nil
}

// Matched is the key the client proved, after a successful ServerFinal.
func (s *SCRAM) Matched() KeyID { return s.matched }

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}
