#!/usr/bin/env python3
"""Links an executable of a debug build once more, with the Swift runtime in it, to another
path, from the objects the build already made (`make package-debug`, for make test's .deb).

    scripts/link-static.py PRODUCT OUT [SCRATCH]   (SCRATCH: .build by default)

The link command is SwiftPM's own, read from its build manifest (SCRATCH/debug.yaml), with
`-o OUT`, `-static-stdlib` and the toolchain's static libraries as one group: objects compiled
for the shared runtime do not name the libraries Foundation's static archive needs
(CoreFoundation, ICU...), and an archive that nothing needs adds nothing. `swift build
--static-swift-stdlib` would link it too, but it changes the build's parameters: modules are
compiled again, and the next ordinary build relinks every product (90 s on 2 cores, against
about 10 s for this one link).
"""
import glob
import json
import os
import subprocess
import sys


def link_command(manifest, product):
    """The arguments of the command that links `product`, from SwiftPM's llbuild manifest (YAML
    whose values here are JSON: each command's `outputs` and `args` are one line each)."""
    wanted = f"/debug/{product}"
    outputs = None
    with open(manifest) as handle:
        for line in handle:
            text = line.strip()
            if text.startswith("outputs: "):
                outputs = json.loads(text[len("outputs: "):])
            elif text.startswith("args: ") and outputs and len(outputs) == 1 and outputs[0].endswith(wanted):
                args = json.loads(text[len("args: "):])
                if "-emit-executable" in args:
                    return args
            elif not line.startswith("    "):
                outputs = None
    return None


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    product, out = sys.argv[1], os.path.abspath(sys.argv[2])
    scratch = sys.argv[3] if len(sys.argv) == 4 else ".build"
    args = link_command(os.path.join(scratch, "debug.yaml"), product)
    if args is None:
        sys.exit(f"link-static: no link command for {product} in {scratch}/debug.yaml (swift build first)")
    args[args.index("-o") + 1] = out
    static = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(args[0]))), "lib", "swift_static", "linux")
    archives = sorted(glob.glob(os.path.join(static, "lib*.a")))
    if not archives:
        sys.exit(f"link-static: no static Swift libraries in {static}")
    group = ["--start-group", *archives, "--end-group"]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run(args + ["-static-stdlib"] + [flag for item in group for flag in ("-Xlinker", item)], check=True)
    print(f"link-static: {out}")


if __name__ == "__main__":
    main()
