#!/usr/bin/env python3
"""Regenerate docs/configuration.md from the daemon's own option table.

usage: build/mxbatchd --check-config /dev/null | contrib/gen-config-doc.py > docs/configuration.md
The test suite checks that every option the daemon knows is documented.
"""
import sys

HEAD = """# Configuration reference

mxbatchd reads one INI file (`mxbatchd --config FILE`); every option has a default, so the
daemon runs with no file at all. `mxbatchd --check-config FILE` validates a file and prints the
effective configuration (every option, with a line of help); an error names the file, line,
section and key, and the daemon refuses to start:

```
mxbatch.conf:12: [spool] queue_lifetime: '5 days' is not a duration (e.g. 30s, 5m, 4h, 5d)
```

Values: durations are a number and a unit (`250ms`, `30s`, `5m`, `4h`, `5d`, `2w`; a bare number
is seconds); sizes take `K`, `M`, `G` (powers of 1024); booleans are `yes`/`no`. Comments start
with `;` or `#`. Relative paths are relative to the daemon's working directory.
An annotated example is `contrib/mxbatch.conf.example`.

Named sections may appear several times with different names:

- `[listen "NAME"]`: a submission door. With none in the file, the daemon has one: `[listen
  "routing"] socket = var/mxbatch.sock`. A listener has exactly one of `socket` (Unix, trusted by
  file permissions) or `address` (TCP).
- `[site "PATTERN"]`: a shape. `"default"` applies to every site; another pattern matches a
  site when it matches one of its MX host names (shell wildcards, e.g. `*.google.com`) or names its
  provider (`google`, from the provider table). Keys a pattern does not set come from
  `[site "default"]`. Where only `"default"` matches, the provider table's own overrides apply
  (`contrib/providers.conf`: `multi_domain = deny` for google and microsoft,
  `messages_per_connection = 20` for yahoo).
- `[pool "NAME"]`: source addresses to send from: `addresses = IP[=EHLO][*WEIGHT], ...`
  (docs/reputation.md).
- `[tenant "NAME"]`: a tenant (the `tenant=` of an account, stored on each of its messages):
  `pool = POOL` sends its mail from that pool. Which pool a message uses: its tenant's, else
  its listener's (`[listen] pool`), else the site's (`[site] pool`, a provider's, the
  `"default"` site's), else the pool named `default` (docs/reputation.md).

## Options
"""


def main():
    out = [HEAD]
    for line in sys.stdin.read().splitlines():
        if line.startswith("["):
            out += ["", "### `%s`" % line, "", "| key | default | meaning |", "|---|---|---|"]
        elif "=" in line and not line.startswith(";"):
            key, rest = line.split("=", 1)
            val, _, help_ = rest.partition(";")
            out.append("| `%s` | `%s` | %s |" % (key.strip(), val.strip() or "(none)", help_.strip()))
    print("\n".join(out))


if __name__ == "__main__":
    main()
