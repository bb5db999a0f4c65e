#!/usr/bin/env python3
"""gen-crafted.py - write the hand-crafted golden files in repo/testdata/crafted/.

An independent renderer of pgBackRest's info-file format (spec:
/work/shared/reference/pgbackrest-format.md sections 2-4), used to cover what a real cluster
cannot easily produce: many history entries, offline and block-incremental backups, bundle
offsets, file names with '=', quotes, backslashes, tabs and non-UTF-8 bytes, owners that
could not be mapped (false), page checksum errors, links to files. The Go package must
load each file and save it back byte for byte.

Usage: python3 repo/testdata/gen-crafted.py
"""
import hashlib
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'crafted')

ESC = {0x22: b'\\"', 0x5c: b'\\\\', 0x0a: b'\\n', 0x0d: b'\\r', 0x09: b'\\t', 0x08: b'\\b', 0x0c: b'\\f'}


def b(s):
    return s if isinstance(s, bytes) else s.encode('utf-8', 'surrogateescape')


def jstr(s):
    out = bytearray(b'"')
    for c in b(s):
        out += ESC.get(c, bytes([c]))
    return bytes(out + b'"')


class Raw(bytes):
    """Pre-rendered JSON."""


def jval(v):
    if isinstance(v, Raw):
        return bytes(v)
    if v is True:
        return b'true'
    if v is False:
        return b'false'
    if v is None:
        return b'null'
    if isinstance(v, int):
        return str(v).encode()
    if isinstance(v, (str, bytes)):
        return jstr(v)
    if isinstance(v, list):
        return b'[' + b','.join(jval(x) for x in v) + b']'
    if isinstance(v, dict):
        return b'{' + b','.join(b'"' + b(k) + b'":' + jval(v[k]) for k in sorted(v, key=b)) + b'}'
    raise TypeError(v)


def render(sections, version='2.45'):
    """sections: [(name, [(key, value)...])] in file order; keys are written in the given order."""
    sections = [('backrest', [('backrest-format', 5), ('backrest-version', version)])] + sections
    lines, h, first = [], hashlib.sha1(b'{'), True
    for name, kvs in sections:
        if not kvs:
            continue
        if not first:
            lines.append(b'')
            h.update(b'},')
        first = False
        lines.append(b'[' + b(name) + b']')
        h.update(b'"' + b(name) + b'":{')
        for i, (k, v) in enumerate(kvs):
            rv = jval(v)
            if i:
                h.update(b',')
            h.update(jstr(k) + b':' + rv)
            lines.append(b(k) + b'=' + rv)
    h.update(b'}}')
    lines += [b'', b'[backrest]', b'backrest-checksum=' + jstr(h.hexdigest())]
    return b'\n'.join(lines) + b'\n'


def srt(d):
    return sorted(d.items(), key=lambda kv: b(kv[0]))


def write(name, data):
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)


SYS96, SYS15 = 6358290358294523481, 7713536057381353351
PASS_A = 'qHkF2MELbr8NDbah9pvLR9lYzm63wOWlk2ij5SXELLDvbb3d74kZCkdL5EizTG/7'
PASS_B = 'Ah9FVGA4c0lI0nGmR2n9l2xQm8UO1n3n6l1q+7bq0mmQ2pOQ1r7u2zq+uoZr1PG3'
PASS_M = 'EEUEZa5JRPlpFrEdIyzyoZS7RSRTajJ+ArxYRpTSAWD1NpE09hsGIBLxBVYIwgkk'


def archive_multi():
    versions = ['9.3', '9.4', '9.5', '9.6', '10', '11', '12', '13', '14', '15', '15']
    hist = [(str(i + 1), {'db-id': SYS96 + i, 'db-version': v}) for i, v in enumerate(versions)]
    cur = hist[-1]
    write('archive-multi-history.info', render([
        ('cipher', [('cipher-pass', PASS_A)]),
        ('db', [('db-id', int(cur[0])), ('db-system-id', cur[1]['db-id']), ('db-version', cur[1]['db-version'])]),
        ('db:history', hist),  # written in id order: "10" and "11" come after "9"
    ]))


def backup_info():
    hist = [
        ('1', {'db-catalog-version': 201608131, 'db-control-version': 960, 'db-system-id': SYS96, 'db-version': '9.6'}),
        ('2', {'db-catalog-version': 202209061, 'db-control-version': 1300, 'db-system-id': SYS15, 'db-version': '15'}),
    ]
    offline = {
        'backrest-format': 5, 'backrest-version': '2.30',
        'backup-archive-start': None, 'backup-archive-stop': None,  # offline: written as null
        'backup-info-repo-size': 100, 'backup-info-repo-size-delta': 100,
        'backup-info-size': 1000, 'backup-info-size-delta': 1000,
        'backup-timestamp-start': 1600000000, 'backup-timestamp-stop': 1600000100,
        'backup-type': 'full', 'db-id': 1,
        'option-archive-check': False, 'option-archive-copy': False, 'option-backup-standby': False,
        'option-checksum-page': False, 'option-compress': False, 'option-hardlink': True, 'option-online': False,
    }
    full = {
        'backrest-format': 5, 'backrest-version': '2.45',
        'backup-annotation': {'key with space': 'tab\there', 'quote': 'say "hi" \\ bye'},
        'backup-archive-start': '000000020000000A000000FE', 'backup-archive-stop': '000000020000000B00000001',
        'backup-error': False,
        'backup-info-repo-size': 4624225, 'backup-info-repo-size-delta': 4624225,
        'backup-info-size': 31938843, 'backup-info-size-delta': 31938843,
        'backup-lsn-start': 'A/FE000028', 'backup-lsn-stop': 'B/1000100',
        'backup-timestamp-start': 1735787045, 'backup-timestamp-stop': 1735787081,
        'backup-type': 'full', 'db-id': 2,
        'option-archive-check': True, 'option-archive-copy': True, 'option-backup-standby': True,
        'option-checksum-page': True, 'option-compress': True, 'option-hardlink': False, 'option-online': True,
    }
    diff = dict(full, **{
        'backup-error': True, 'backup-prior': '20250102-030405F',
        'backup-reference': ['20250102-030405F'], 'backup-type': 'diff',
        'backup-info-repo-size-delta': 5000, 'backup-info-size-delta': 9000,
        'backup-timestamp-start': 1735819200, 'backup-timestamp-stop': 1735819300,
    })
    del diff['backup-annotation']
    incr = dict(diff, **{
        'backup-error': False, 'backup-prior': '20250102-030405F_20250102-120000D',
        'backup-reference': ['20250102-030405F', '20250102-030405F_20250102-120000D'], 'backup-type': 'incr',
        'backup-info-repo-size-map': 4096, 'backup-info-repo-size-map-delta': 512,
        'backup-timestamp-start': 1735898706, 'backup-timestamp-stop': 1735898800,
    })
    current = [
        ('20200913-122640F', offline),
        ('20250102-030405F', full),
        ('20250102-030405F_20250102-120000D', diff),
        ('20250102-030405F_20250103-040506I', incr),
    ]
    cur = hist[-1][1]
    write('backup-varied.info', render([
        ('backup:current', current),
        ('cipher', [('cipher-pass', PASS_B)]),
        ('db', [('db-catalog-version', cur['db-catalog-version']), ('db-control-version', cur['db-control-version']),
                ('db-id', 2), ('db-system-id', SYS15), ('db-version', '15')]),
        ('db:history', hist),
    ]))
    # A new stanza: no backups, no [backup:current] section.
    write('backup-empty.info', render([
        ('db', [('db-catalog-version', 202209061), ('db-control-version', 1300), ('db-id', 1),
                ('db-system-id', SYS15), ('db-version', '15')]),
        ('db:history', [('1', hist[1][1])]),
    ]))


def manifest_varied():
    label = '20250102-030405F_20250103-040506I'
    full, diff = '20250102-030405F', '20250102-030405F_20250102-120000D'
    backup = {
        'backup-archive-start': '000000020000000A000000FE', 'backup-archive-stop': '000000020000000B00000001',
        'backup-label': label, 'backup-lsn-start': 'A/FE000028', 'backup-lsn-stop': 'B/1000100',
        'backup-prior': diff, 'backup-reference': ','.join([full, diff, label]),
        'backup-timestamp-copy-start': 1735898710, 'backup-timestamp-start': 1735898706,
        'backup-timestamp-stop': 1735898800, 'backup-type': 'incr',
    }
    bdb = {'db-catalog-version': 201608131, 'db-control-version': 960, 'db-id': 1, 'db-system-id': SYS96,
           'db-version': '9.6'}
    opt = {
        'option-archive-check': True, 'option-archive-copy': False, 'option-backup-standby': True,
        'option-buffer-size': 65536, 'option-checksum-page': False, 'option-compress': True,
        'option-compress-level': 3, 'option-compress-level-network': 1, 'option-compress-type': 'zst',
        'option-delta': True, 'option-hardlink': False, 'option-online': True, 'option-process-max': 4,
    }
    target = {
        'pg_data': {'path': '/var/lib/postgresql/9.6/main', 'type': 'path'},
        'pg_data/pg_xlog': {'path': '/wal', 'type': 'link'},
        'pg_data/postgresql.conf': {'file': 'postgresql.conf', 'path': '/etc/postgresql/9.6/main', 'type': 'link'},
        'pg_tblspc/16400': {'path': '/ts/one', 'tablespace-id': '16400', 'tablespace-name': 'ts one', 'type': 'link'},
    }
    db = {
        'postgres': {'db-id': 12407, 'db-last-system-id': 12406},
        'we=ird': {'db-id': 16384, 'db-last-system-id': 12406},  # '=' in the key: parsed by retrying at the next '='
        'template0': {'db-id': 12406, 'db-last-system-id': 12406},
    }
    sha = lambda s: hashlib.sha1(s.encode()).hexdigest()
    files = {
        'pg_data/PG_VERSION': {'checksum': sha('9.6\n'), 'mode': '0600', 'rck': sha('rck1'), 'reference': full,
                               'repo-size': 23, 'size': 4, 'timestamp': 1735787000},
        'pg_data/a=b': {'checksum': sha('ab'), 'rck': sha('rck2'), 'repo-size': 30, 'size': 2, 'timestamp': 1735898701},
        'pg_data/a==b=': {'checksum': sha('ab2'), 'rck': sha('rck2b'), 'size': 3, 'timestamp': 1735898701},
        'pg_data/base/1/1255': {'checksum': sha('x'), 'checksum-page': False, 'checksum-page-error': [0, [3, 5], 9],
                                'rck': sha('rck3'), 'repo-size': 101924, 'size': 786432, 'timestamp': 1735898702},
        'pg_data/base/1/2608': {'bni': 1, 'checksum': sha('y'), 'checksum-page': True, 'rck': sha('rck4'),
                                'reference': diff, 'repo-size': 900, 'size': 8192, 'timestamp': 1735819201},
        'pg_data/base/1/2609': {'bni': 1, 'bno': 900, 'checksum': sha('z'), 'checksum-page': True, 'rck': sha('rck5'),
                                'reference': diff, 'repo-size': 50, 'size': 16384, 'timestamp': 1735819201},
        'pg_data/base/1/2610': {'bi': 2, 'bic': 8, 'bim': 100, 'bni': 3, 'bno': 10, 'checksum': sha('w'),
                                'rck': sha('rck6'), 'repo-size': 1200, 'size': 65536, 'timestamp': 1735898702},
        'pg_data/base/1/2611': {'bi': 1, 'checksum': sha('v'), 'rck': sha('rck7'), 'repo-size': 300, 'size': 8192,
                                'timestamp': 1735898702},
        'pg_data/base/1/empty': {'checksum-page': True, 'rck': sha('rck8'), 'repo-size': 13, 'size': 0,
                                 'timestamp': 1735898702},
        'pg_data/partial': {'size': 10, 'timestamp': 1735898703},  # checksum not yet known (resume checkpoint)
        'pg_data/owner': {'checksum': sha('o'), 'group': 'other', 'mode': '0755', 'size': 1, 'timestamp': 5,
                          'user': False},
        'pg_data/nogroup': {'checksum': sha('n'), 'group': False, 'size': 1, 'timestamp': 0, 'user': 'root'},
        b'pg_data/caf\xe9 "q" back\\slash\ttab': {'checksum': sha('q'), 'size': 1, 'timestamp': 1},
        'pg_data/pg_xlog/000000020000000A000000FE.zst': {'checksum': sha('wal'), 'size': 16777216,
                                                         'repo-size': 12345, 'timestamp': 1735898799},
        'pg_tblspc/16400/PG_9.6_201608131/16384/16385': {'checksum': sha('t'), 'checksum-page': True,
                                                         'reference': full, 'size': 8192, 'timestamp': 1735787010},
        'pg_data/{"x":1}': {'checksum': sha('j'), 'size': 1, 'timestamp': 1},
    }
    links = {
        'pg_data/pg_tblspc/16400': {'destination': '/ts/one'},
        'pg_data/pg_xlog': {'destination': '/wal', 'group': False},
        'pg_data/postgresql.conf': {'destination': '/etc/postgresql/9.6/main/postgresql.conf', 'user': 'root'},
    }
    paths = {
        'pg_data': {}, 'pg_data/base': {'mode': '0700'}, 'pg_data/base/1': {'mode': '0700'},
        'pg_data/odd': {'group': 'other', 'mode': '0711', 'user': False}, 'pg_data/pg_xlog': {},
        'pg_tblspc': {}, 'pg_tblspc/16400': {'mode': '0700'}, 'pg_tblspc/16400/PG_9.6_201608131': {},
    }
    owner = {'group': 'postgres', 'user': 'postgres'}
    write(label + '.manifest', render([
        ('backup', srt(backup)), ('backup:db', srt(bdb)), ('backup:option', srt(opt)), ('backup:target', srt(target)),
        ('cipher', [('cipher-pass', PASS_M)]), ('db', srt(db)),
        ('metadata', [('annotation', {'note': 'line1\nline2', 'source': 'crafted/1'})]),
        ('target:file', srt(files)), ('target:file:default', srt(dict(owner, mode='0640'))),
        ('target:link', srt(links)), ('target:link:default', srt(owner)),
        ('target:path', srt(paths)), ('target:path:default', srt(dict(owner, mode='0750'))),
    ]))


def manifest_offline():
    label = '20250105-000000F'
    backup = {
        'backup-block-incr': True, 'backup-bundle': True, 'backup-bundle-raw': True, 'backup-label': label,
        'backup-reference': label, 'backup-timestamp-copy-start': 1736035201,
        'backup-timestamp-start': 1736035200, 'backup-timestamp-stop': 1736035300, 'backup-type': 'full',
    }
    bdb = {'db-catalog-version': 202209061, 'db-control-version': 1300, 'db-id': 3, 'db-system-id': SYS15,
           'db-version': '15'}
    opt = {'option-archive-check': False, 'option-archive-copy': False, 'option-compress': False,
           'option-compress-type': 'none', 'option-hardlink': True, 'option-online': False}
    files = {
        'pg_data/global/pg_control': {'bi': 4, 'bim': 64, 'bni': 1, 'checksum': '0' * 40, 'size': 8192,
                                      'timestamp': 1736035100},
        'pg_data/global/empty': {'size': 0, 'timestamp': 1736035100},
        'pg_data/root-owned': {'checksum': 'f' * 40, 'group': 'root', 'size': 5, 'timestamp': 1736035100,
                               'user': 'root'},
    }
    unmapped = {'group': False, 'user': False}
    write(label + '.manifest', render([
        ('backup', srt(backup)), ('backup:db', srt(bdb)), ('backup:option', srt(opt)),
        ('backup:target', [('pg_data', {'path': '/data', 'type': 'path'})]),
        ('target:file', srt(files)), ('target:file:default', srt(dict(unmapped, mode='0600'))),
        ('target:path', [('pg_data', {}), ('pg_data/global', {'mode': '0755', 'user': 'root'})]),
        ('target:path:default', srt(dict(unmapped, mode='0700'))),
    ]))


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    archive_multi()
    backup_info()
    manifest_varied()
    manifest_offline()
    print('crafted golden files written to', OUT)
