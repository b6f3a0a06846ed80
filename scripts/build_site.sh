#!/usr/bin/env bash
# Render the lessons (notebooks/NN_*.ipynb) as static HTML pages, with the outputs and figures
# stored in the notebooks: nothing is executed. Writes one page per lesson and index.html.
#
#   scripts/build_site.sh [--out DIR] [--only NN [NN ...]] [--mathjax-url URL]
#
#   --out DIR          where the pages go (default: site/ in the repository)
#   --only NN ...      build only these lessons, by number (e.g. --only 00 10)
#   --mathjax-url URL  where the pages load MathJax 2 from (default: nbconvert's CDN address).
#                      Formulas are typeset when MathJax loads and read as LaTeX source when it
#                      does not; everything else in a page is inside the page itself.
#
# Open DIR/index.html in a browser. Needs jupyter (nbconvert): .venv/bin/jupyter when the course
# environment exists (scripts/setup_env.sh), else jupyter on PATH.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,14p' "$root/scripts/build_site.sh" | sed 's/^# \{0,1\}//'; }

out="$root/site"
only=()
mathjax=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out)
            [ $# -ge 2 ] || { echo "build_site.sh: --out needs a directory" >&2; exit 2; }
            out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        --only)
            shift
            while [ $# -gt 0 ] && [[ $1 != -* ]]; do only+=("$1"); shift; done
            [ ${#only[@]} -gt 0 ] || { echo "build_site.sh: --only needs lesson numbers, e.g. --only 00 10" >&2; exit 2; } ;;
        --mathjax-url)
            [ $# -ge 2 ] || { echo "build_site.sh: --mathjax-url needs a URL" >&2; exit 2; }
            mathjax=("--HTMLExporter.mathjax_url=$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build_site.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac   # relative to where the script was called from
cd "$root"

if [ -x "$root/.venv/bin/jupyter" ]; then
    jupyter="$root/.venv/bin/jupyter"
elif command -v jupyter >/dev/null 2>&1; then
    jupyter=$(command -v jupyter)
else
    echo "build_site.sh: jupyter not found: run scripts/setup_env.sh (creates .venv) or put jupyter (nbconvert) on PATH" >&2
    exit 1
fi
# The Python next to jupyter writes the contents page (standard library only).
py="$(dirname "$jupyter")/python"
[ -x "$py" ] || py=$(command -v python3 || true)
[ -n "$py" ] || { echo "build_site.sh: python3 not found" >&2; exit 1; }

lessons=()
if [ ${#only[@]} -eq 0 ]; then
    for nb in notebooks/[0-9][0-9]_*.ipynb; do [ -e "$nb" ] && lessons+=("$nb"); done
else
    for n in "${only[@]}"; do
        [[ $n =~ ^[0-9][0-9]$ ]] || { echo "build_site.sh: --only takes two-digit lesson numbers, not '$n'" >&2; exit 2; }
        match=(notebooks/"$n"_*.ipynb)
        [ -e "${match[0]}" ] || { echo "build_site.sh: no lesson notebooks/${n}_*.ipynb" >&2; exit 2; }
        lessons+=("${match[@]}")
    done
fi
[ ${#lessons[@]} -gt 0 ] || { echo "build_site.sh: no lessons in notebooks/" >&2; exit 1; }

mkdir -p "$out"
rm -f "$out"/index.html "$out"/[0-9][0-9]_*.html    # only what this script writes
start=$(date +%s)
# scripts/site_template: nbconvert's 'lab' template without require.js, the widget manager or the
# mermaid loader (ipywidgets drawn from their stored state), solutions collapsed, navigation links.
"$jupyter" nbconvert --to html --template site_template \
    --TemplateExporter.extra_template_basedirs="$root/scripts" \
    ${mathjax[@]+"${mathjax[@]}"} --log-level ERROR --output-dir "$out" "${lessons[@]}"

# Page titles, previous/next links and the contents page.
"$py" - "$out" "${lessons[@]}" <<'PY'
import html
import json
import re
import subprocess
import sys
from pathlib import Path

out, notebooks = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)(?:\s+#+)?\s*$")


def title(nb_path):
    """The notebook's first markdown heading (its file name when it has none)."""
    for cell in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for line in source.splitlines():
            m = HEADING.match(line)
            if m:
                return m.group(1).strip()
    return nb_path.stem


lessons = sorted({(nb.stem + ".html", title(nb)) for nb in notebooks})
for i, (page, name) in enumerate(lessons):
    links = ""
    if i > 0:
        links += f'<a href="{lessons[i - 1][0]}">&larr; {html.escape(lessons[i - 1][1])}</a>'
    if i + 1 < len(lessons):
        links += f'<a href="{lessons[i + 1][0]}">{html.escape(lessons[i + 1][1])} &rarr;</a>'
    path = out / page
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"<title>.*?</title>", lambda m: f"<title>{html.escape(name)}</title>", text,
                  count=1, flags=re.S)
    path.write_text(text.replace("<!-- site-prev-next -->", links), encoding="utf-8")

try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
except (OSError, subprocess.CalledProcessError):
    commit = ""
built_from = f" (commit {commit})" if commit else ""
items = "\n".join(f'  <li><a href="{page}">{html.escape(name)}</a></li>' for page, name in lessons)
(out / "index.html").write_text(f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Deep Learning for Medical Image Registration</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 46em;
       margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222; }}
ul.lessons {{ list-style: none; padding-left: 0; }}
ul.lessons li {{ margin: 0.4em 0; }}
code {{ background: #f2f2f2; padding: 0 0.2em; border-radius: 3px; }}
.note {{ color: #555; font-size: 95%; }}
</style>
</head>
<body>
<h1>Deep Learning for Medical Image Registration</h1>
<p>The lessons of the course as static pages: the outputs and figures stored in the repository{built_from},
from the <strong>quick</strong> profile (a laptop CPU). Nothing here runs. To run the course yourself,
clone the repository and start <code>scripts/lab.sh</code>: it creates the environment and opens
JupyterLab on the notebooks.</p>
<ul class="lessons">
{items}
</ul>
<p class="note">Exercise solutions are collapsed: click "Solution" to show the code. Interactive widgets
show the state they were saved in. Formulas are typeset by MathJax when it can be loaded from the
network and read as LaTeX source otherwise.</p>
</body>
</html>
""", encoding="utf-8")
PY
echo "build_site.sh: ${#lessons[@]} lesson(s) in $(( $(date +%s) - start )) s: open $out/index.html"
