package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/dev/pgserver"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a server certificate for dnsName and its key, in PEM.
func (ca testCA) issue(t *testing.T, dnsName string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVerifyFull: against a PostgreSQL server whose certificate (for
// localhost) a CA of the test signed, verify-full connects with that CA
// (SANDSTONE_DB_CA_FILE, or the URL's sslrootcert) and fails, naming the
// certificate's problem and without the password, with another CA or
// another host name.
func TestVerifyFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca, other := newCA(t, "sandstone test CA"), newCA(t, "another CA")
	certPEM, keyPEM := ca.issue(t, "localhost")
	srv, err := pgserver.Start(ctx, pgserver.Options{CertPEM: certPEM, KeyPEM: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Stop() }()
	caFile, otherFile := writeFile(t, "ca.pem", ca.pem), writeFile(t, "other.pem", other.pem)
	url := func(host, query string) string {
		return fmt.Sprintf("postgres://postgres:pw-s3cret@%s:%d/postgres?%s", host, srv.Port, query)
	}
	connect := func(url, caFile string) error {
		t.Setenv(EnvDBCAFile, caFile)
		cfg, err := ParsePG(url)
		if err != nil {
			return err
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return ConnectFailure(Source, url, cfg, err)
		}
		var ssl bool
		if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
			t.Errorf("%s: connected without TLS (%v)", url, err)
		}
		return conn.Close(ctx)
	}
	for _, c := range []struct {
		name, url, caFile string
		want              string // "" to connect
	}{
		{"the CA file", url("localhost", "sslmode=verify-full"), caFile, ""},
		{"the URL's sslrootcert", url("localhost", "sslmode=verify-full&sslrootcert="+caFile), "", ""},
		{"verify-ca under another name", url("127.0.0.1", "sslmode=verify-ca"), caFile, ""},
		{"another CA", url("localhost", "sslmode=verify-full"), otherFile, "certificate signed by unknown authority"},
		{"another host name", url("127.0.0.1", "sslmode=verify-full"), caFile, "cannot validate certificate for 127.0.0.1"},
		{"verify-ca with another CA", url("127.0.0.1", "sslmode=verify-ca"), otherFile, "certificate signed by unknown authority"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := connect(c.url, c.caFile)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("does not connect: %v", err)
			case c.want != "" && err == nil:
				t.Errorf("connects; want an error naming %q", c.want)
			case c.want != "" && (!strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "pw-s3cret")):
				t.Errorf("error %q: want it to name %q, without the password", err, c.want)
			}
		})
	}
	t.Run("a CA file without certificates", func(t *testing.T) {
		t.Setenv(EnvDBCAFile, writeFile(t, "empty.pem", []byte("nothing")))
		if _, err := ParsePG(url("localhost", "sslmode=verify-full")); err == nil || !strings.Contains(err.Error(), EnvDBCAFile) {
			t.Errorf("ParsePG: %v, want an error naming %s", err, EnvDBCAFile)
		}
	})
}

// TestRDSDefault: an RDS host without sslmode gets verify-full against the
// embedded RDS bundle and no fallback without TLS; an sslmode in the URL
// is honoured; other hosts keep pgx's defaults.
func TestRDSDefault(t *testing.T) {
	t.Setenv(EnvDBCAFile, "")
	t.Setenv("PGSSLMODE", "")
	const rds = "postgres://u:p@totesys.abc123.eu-west-2.rds.amazonaws.com:5432/totesys"
	cfg, err := ParsePG(rds)
	if err != nil {
		t.Fatal(err)
	}
	tc := cfg.TLSConfig
	if tc == nil || tc.InsecureSkipVerify || tc.RootCAs == nil || tc.ServerName != "totesys.abc123.eu-west-2.rds.amazonaws.com" || len(cfg.Fallbacks) != 0 {
		t.Errorf("RDS host: TLS %+v, %d fallbacks; want verify-full against the RDS bundle and no fallback", tc, len(cfg.Fallbacks))
	}
	if n := strings.Count(string(rdsCABundle), "BEGIN CERTIFICATE"); n < 100 {
		t.Errorf("the embedded RDS bundle has %d certificates", n)
	}
	if cfg, err = ParsePG(rds + "?sslmode=require"); err != nil || cfg.TLSConfig == nil || !cfg.TLSConfig.InsecureSkipVerify {
		t.Errorf("sslmode=require in the URL is not honoured: %v", err)
	}
	if cfg, err = ParsePG("postgres://u:p@db.internal:5432/x"); err != nil || cfg.TLSConfig == nil || !cfg.TLSConfig.InsecureSkipVerify || len(cfg.Fallbacks) != 1 {
		t.Errorf("another host without sslmode: want pgx's prefer, got %v", err)
	}
}
