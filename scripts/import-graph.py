#!/usr/bin/env python3
"""The import graph of a crate's modules: circles, arrows that run back up, the largest files.

Usage: scripts/import-graph.py [--check] [crate-src-dir ...]   (default: src sim/src)

A node is a module file. An arrow runs from a file to every module it names through `crate::`,
`super::` or `self::` paths (in `use` items and inline), resolved through `pub use`
re-exports to the file that defines the name. Unit-test modules (`#[cfg(test)] mod tests`)
are left out: they sit inside the module they test. A circle is a strongly connected
component of more than one file; an arrow "runs back up" when it points at an ancestor
module (a child that imports its parent). `--check` exits 1 when there is a circle.
"""
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_files(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            if not n.endswith(".rs"):
                continue
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main") and len(rel) == 1:
                if rel[-1] == "main" and os.path.exists(os.path.join(root, "lib.rs")):
                    continue  # the binary is its own crate
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            files[path] = p
    return files


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+" + IDENT + r"\s*\{", text)
    if m:
        text = text[: m.start()]
    return text


def use_trees(text):
    """Every path a `use` item or an inline path names, as lists of segments."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(expand(m.group(1).replace("\n", " ")))
    for m in re.finditer(r"(?<![:\w])((?:crate|super|self)(?:::(?:super|" + IDENT + "))+)", text):
        paths.append(m.group(1).split("::"))
    return paths


def expand(tree, prefix=()):
    tree = tree.strip()
    if not tree:
        return []
    if "{" not in tree:
        seg = [s.strip() for s in tree.split(" as ")[0].split("::") if s.strip()]
        return [list(prefix) + seg]
    head, rest = tree.split("{", 1)
    rest = rest[: rest.rfind("}")]
    base = list(prefix) + [s.strip() for s in head.split("::") if s.strip()]
    out, depth, cur = [], 0, ""
    for ch in rest:
        if ch == "," and depth == 0:
            out.extend(expand(cur, base))
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    out.extend(expand(cur, base))
    if not out:
        out = [base]
    return out


def absolute(mod, seg):
    if not seg:
        return None
    if seg[0] == "crate":
        return seg[1:]
    if seg[0] in ("super", "self"):
        cur = list(mod)
        while seg and seg[0] in ("super", "self"):
            if seg[0] == "super":
                cur = cur[:-1]
            seg = seg[1:]
        return cur + seg
    return None


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    check = "--check" in sys.argv
    roots = args or ["src", "sim/src"]
    circles_total = 0
    for root in roots:
        files = module_files(root)
        texts = {m: strip(open(p).read()) for m, p in files.items()}
        # `pub use` re-exports: (module, name) -> the module that defines it.
        reexport = {}
        for m, t in texts.items():
            for u in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", t):
                for seg in expand(u.group(1).replace("\n", " ")):
                    a = absolute(m, seg) if seg[0] in ("crate", "super", "self") else list(m) + seg
                    if a:
                        reexport[(m, a[-1])] = tuple(a[:-1])

        def resolve(a):
            for n in range(len(a), -1, -1):
                if tuple(a[:n]) in files:
                    mod = tuple(a[:n])
                    if n < len(a) and (mod, a[n]) in reexport:
                        tgt = reexport[(mod, a[n])]
                        if tgt != mod and tgt in files:
                            return tgt
                    return mod
            return ()

        edges = {m: set() for m in files}
        for m, t in texts.items():
            for seg in use_trees(t):
                a = absolute(m, seg)
                if a is None:
                    continue
                tgt = resolve(a)
                if tgt != m and tgt != ():
                    edges[m].add(tgt)
        sccs = tarjan(edges)
        circles = [c for c in sccs if len(c) > 1]
        circles_total += len(circles)
        up = sorted((m, t) for m, ts in edges.items() for t in ts if m[: len(t)] == t and len(t) < len(m))
        name = lambda m: "/".join(m) or "lib"
        print(f"## {root}: {len(files)} files, {sum(map(len, edges.values()))} arrows")
        print(f"circles: {len(circles)}")
        for c in circles:
            print("  - " + " <-> ".join(sorted(name(m) for m in c)))
        print(f"arrows running back up (child -> ancestor): {len(up)}")
        for m, t in up:
            print(f"  - {name(m)} -> {name(t)}")
        sizes = sorted(((sum(1 for _ in open(p)), p) for p in files.values()), reverse=True)[:8]
        print("largest files: " + ", ".join(f"{os.path.relpath(p, root)} {n}" for n, p in sizes))
        print()
    if check and circles_total:
        sys.exit(1)


def tarjan(edges):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = i[0]
        i[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    main()
