"""Print the README's two set-up commands (the first two lines of its first ```bash block).

CI runs exactly these, so the README cannot drift from what CI proves.
"""

import re
import sys
from pathlib import Path

text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
block = re.search(r"```bash\n(.*?)```", text, flags=re.S)
if block is None:
    sys.exit("README.md: no ```bash block with the set-up commands")
lines = [ln.strip() for ln in block.group(1).splitlines() if ln.strip()]
if len(lines) < 2:
    sys.exit("README.md: the first ```bash block must hold the install-and-run and the test command")
print(lines[0])
print(lines[1])
