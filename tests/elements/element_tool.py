#!/usr/bin/env python3
"""Element helper for chroot-phases.sh: dependency resolution and package lists (DIB rules).

  element_tool.py resolve ELEMENTS_DIR ELEMENT...        -> space separated, sorted
  element_tool.py packages ELEMENTS_DIR PHASE ELEMENT...  -> packages installed in PHASE
"""
import json
import os
import sys

import yaml


def resolve(elements_dir, names):
    seen, queue = set(), list(names)
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        path = os.path.join(elements_dir, name)
        if not os.path.isdir(path):
            sys.exit('unknown element %s' % name)
        seen.add(name)
        deps = os.path.join(path, 'element-deps')
        if os.path.exists(deps):
            queue.extend(line.strip() for line in open(deps) if line.strip() and not line.startswith('#'))
    return sorted(seen)


def mapped(elements_dir, element, package):
    path = os.path.join(elements_dir, element, 'pkg-map')
    if not os.path.exists(path):
        return package
    pkg_map = json.load(open(path))
    distro, release = os.environ['DISTRO_NAME'], os.environ['DIB_RELEASE']
    for table in (pkg_map.get('release', {}).get(distro, {}).get(release, {}),
                  pkg_map.get('distro', {}).get(distro, {}),
                  pkg_map.get('family', {}).get('debian', {}),
                  pkg_map.get('default', {})):
        if package in table:
            return table[package]
    return package


def when_holds(condition):
    if not condition:
        return True
    for op in ('!=', '='):
        if op in condition:
            var, value = (s.strip() for s in condition.split(op, 1))
            actual = os.environ.get(var, '')
            return actual != value if op == '!=' else actual == value
    raise SystemExit('bad when: %s' % condition)


def packages(elements_dir, phase, names):
    phase = phase.replace('.d', '')
    out = []
    for element in names:
        path = os.path.join(elements_dir, element, 'package-installs.yaml')
        if not os.path.exists(path):
            continue
        for package, opts in (yaml.safe_load(open(path)) or {}).items():
            opts = opts or {}
            if opts.get('phase', 'install') != phase or opts.get('uninstall'):
                continue
            arch = os.environ.get('ARCH', 'amd64')
            if 'arch' in opts and arch not in opts['arch'].split(','):
                continue
            if 'not-arch' in opts and arch in opts['not-arch'].split(','):
                continue
            if not when_holds(opts.get('when')):
                continue
            name = mapped(elements_dir, element, package)
            if name:
                out.append(name)
    return sorted(set(out))


if __name__ == '__main__':
    cmd, elements_dir = sys.argv[1], sys.argv[2]
    if cmd == 'resolve':
        print(' '.join(resolve(elements_dir, sys.argv[3:])))
    else:
        print(' '.join(packages(elements_dir, sys.argv[3], sys.argv[4:])))
