// Package certs issues the CA and server certificate of a pool in TLS mode Generated, and
// decides when an existing pair must be renewed.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Validity periods and the renewal margins before expiry.
const (
	CAValidity         = 10 * 365 * 24 * time.Hour
	ServerValidity     = 365 * 24 * time.Hour
	CARenewBefore      = 365 * 24 * time.Hour
	ServerRenewBefore  = 30 * 24 * time.Hour
	backdate           = 5 * time.Minute // tolerate clock skew between operator and clients
	caCommonNamePrefix = "edgepool CA "
)

// Bundle is a CA plus a server certificate it signed, all PEM-encoded.
type Bundle struct {
	CACert     []byte
	CAKey      []byte
	ServerCert []byte
	ServerKey  []byte
}

// NewCA issues a self-signed CA for a pool.
func NewCA(poolID string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonNamePrefix + poolID, Organization: []string{"edgepool"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// NewServerCert issues a server certificate for dnsNames signed by the CA. A name that is an IP
// address goes into the IP address SANs (clients match an IP host only against those).
func NewServerCert(caCertPEM, caKeyPEM []byte, dnsNames []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	caCert, err := ParseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(ServerValidity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	dns, ips := splitHosts(dnsNames)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0], Organization: []string{"edgepool"}},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign server certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Ensure returns a bundle valid for dnsNames at now, reusing what it can from existing (which
// may be empty or partly invalid), and the time at which it must be looked at again.
// reissued reports whether anything new was issued.
func Ensure(existing Bundle, poolID string, dnsNames []string, now time.Time) (b Bundle, renewAt time.Time, reissued bool, err error) {
	b = existing
	caCert, caErr := ParseCert(existing.CACert)
	_, keyErr := parseKey(existing.CAKey)
	if caErr != nil || keyErr != nil || now.After(caCert.NotAfter.Add(-CARenewBefore)) {
		if b.CACert, b.CAKey, err = NewCA(poolID, now); err != nil {
			return Bundle{}, time.Time{}, false, err
		}
		b.ServerCert, b.ServerKey = nil, nil
		reissued = true
		if caCert, err = ParseCert(b.CACert); err != nil {
			return Bundle{}, time.Time{}, false, err
		}
	}
	if !serverCertValid(b, caCert, dnsNames, now) {
		if b.ServerCert, b.ServerKey, err = NewServerCert(b.CACert, b.CAKey, dnsNames, now); err != nil {
			return Bundle{}, time.Time{}, false, err
		}
		reissued = true
	}
	server, err := ParseCert(b.ServerCert)
	if err != nil {
		return Bundle{}, time.Time{}, false, err
	}
	renewAt = server.NotAfter.Add(-ServerRenewBefore)
	if caRenew := caCert.NotAfter.Add(-CARenewBefore); caRenew.Before(renewAt) {
		renewAt = caRenew
	}
	return b, renewAt, reissued, nil
}

// serverCertValid: parses, chains to the CA, covers exactly dnsNames, matches its key and is not
// due for renewal.
func serverCertValid(b Bundle, ca *x509.Certificate, dnsNames []string, now time.Time) bool {
	cert, err := ParseCert(b.ServerCert)
	if err != nil {
		return false
	}
	key, err := parseKey(b.ServerKey)
	if err != nil || !key.PublicKey.Equal(cert.PublicKey) {
		return false
	}
	if cert.CheckSignatureFrom(ca) != nil {
		return false
	}
	dns, ips := splitHosts(dnsNames)
	if !slices.Equal(cert.DNSNames, dns) || !slices.EqualFunc(cert.IPAddresses, ips, net.IP.Equal) {
		return false
	}
	return now.Before(cert.NotAfter.Add(-ServerRenewBefore))
}

// splitHosts separates host names from IP addresses, keeping their order.
func splitHosts(hosts []string) (dns []string, ips []net.IP) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

// ParseCert decodes the first PEM certificate.
func ParseCert(pemBytes []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("key is not ECDSA")
	}
	return ec, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return serial, nil
}
