#!/usr/bin/env bash
# Renders the Mermaid blocks of a `novamedic diagnose -o markdown` report
# with mermaid (from npm) in Debian's headless Chromium, and fails if
# mermaid reports a parse or render error.
#
# Usage: scripts/check-mermaid.sh [REPORT.md]
#   REPORT.md defaults to target/diagnose-report/report.md, which the
#   `text_and_markdown_reports` test of the controller writes; the script
#   runs that test when the file is missing.
#
# As root it installs chromium, nodejs and npm with apt-get when they are
# missing. mermaid is installed once into target/mermaid-cache.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

report=${1:-target/diagnose-report/report.md}
cache=target/mermaid-cache
mermaid_version=11

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "check-mermaid.sh: needs ${missing[*]}: apt-get install ${missing[*]} (as root)" >&2
        exit 2
    fi
    echo "==> installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -f $cache/node_modules/mermaid/dist/mermaid.min.js ]]; then
    echo "==> npm install mermaid@$mermaid_version into $cache"
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --loglevel=error "mermaid@$mermaid_version" >/dev/null
fi

if [[ ! -f $report ]]; then
    echo "==> writing a sample report with the controller's test"
    cargo test -p novamedic --test diagnose --locked text_and_markdown_reports >/dev/null
fi

page=$(realpath "$cache")/check.html
node - "$report" "$page" "$(realpath "$cache")/node_modules/mermaid/dist/mermaid.min.js" <<'EOF'
const fs = require("fs");
const [report, page, script] = process.argv.slice(2);
const blocks = [];
let current = null;
for (const line of fs.readFileSync(report, "utf8").split("\n")) {
  if (current === null && line === "```mermaid") current = [];
  else if (current !== null && line === "```") { blocks.push(current.join("\n")); current = null; }
  else if (current !== null) current.push(line);
}
if (blocks.length === 0) { console.error(`check-mermaid.sh: no mermaid blocks in ${report}`); process.exit(1); }
const html = `<!doctype html><html><body>
<pre id="result">MERMAID-PENDING</pre>
<script src="file://${script}"></script>
<script>
const blocks = ${JSON.stringify(blocks).replace(/</g, "\\u003c")};
(async () => {
  const errors = [];
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
  for (let i = 0; i < blocks.length; i++) {
    try {
      await mermaid.parse(blocks[i]);
      const { svg } = await mermaid.render("diagram" + i, blocks[i]);
      if (!svg.includes("<svg")) errors.push("block " + (i + 1) + ": no SVG produced");
    } catch (err) {
      errors.push("block " + (i + 1) + ": " + (err && err.message ? err.message : String(err)));
    }
  }
  document.getElementById("result").textContent = errors.length
    ? "MERMAID-ERROR " + errors.join(" | ")
    : "MERMAID-OK " + blocks.length;
})();
</script></body></html>`;
fs.writeFileSync(page, html);
console.log(`==> rendering ${blocks.length} mermaid blocks from ${report}`);
EOF

# --no-sandbox because CI runs as root; the page is our own local file.
dom=$(chromium --headless --no-sandbox --disable-gpu --allow-file-access-from-files \
    --virtual-time-budget=20000 --dump-dom "file://$page" 2>/dev/null)
result=$(grep -o 'MERMAID-[A-Z]*[^<]*' <<<"$dom" | head -1 || true)
case $result in
    MERMAID-OK*)
        echo "mermaid rendered every block: ${result#MERMAID-OK }"
        ;;
    *)
        echo "check-mermaid.sh: mermaid failed: ${result:-no result from chromium}" >&2
        exit 1
        ;;
esac
