"""A fakepve (a fake Proxmox VE API) for the tests of the Proxmox client, driven over stdin.

Started by adapters/tests/proxmox.rs as `python3 harness.py DIR`. It serves the fake on
127.0.0.1 with a port the system picks and a certificate made for 127.0.0.1, creates the API
token `root@pam!vigil`, writes the certificate and the API schema fakepve ships (decompressed,
so that the test can check every request against it) into DIR, and prints one line of JSON:
{"port": ..., "cert": ..., "schema": ..., "token": ...}.

Then each line on stdin is a command, a JSON object with an "op"; each gets one line of JSON on
stdout: {"ok": result} or {"error": message}. End of input stops the fake, so that it never
outlives the test that started it.

Every request the fake receives is recorded with its query string, its content type and the
kind of authorisation it carried (never the secret), for the test's schema check.
"""

import asyncio
import gzip
import json
import os
import pkgutil
import sys

from fakepve import FakePve
from fakepve.certs import make_cert

HOST = '127.0.0.1'
TOKEN_ID = 'root@pam!vigil'
TOKEN_SECRET = '5ecf2b0e-8c59-4d5a-9d5a-2f4b8c1d7e01'


class RecordingPve(FakePve):
    """FakePve, recording each request whole: fakepve's own record drops the query string."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def _record(self, request, body):
        super()._record(request, body)
        auth = request.headers.get('Authorization', '')
        if auth.startswith('PVEAPIToken='):
            kind = 'token:' + auth[len('PVEAPIToken='):].partition('=')[0]
        elif request.cookies.get('PVEAuthCookie'):
            kind = 'ticket'
        else:
            kind = 'none'
        self.seen.append({'method': request.method, 'path': request.rel_url.raw_path_qs,
                          'content_type': request.headers.get('Content-Type', ''),
                          'body': body.decode('utf-8', 'replace'), 'auth': kind})


def guest_view(pve, vmid):
    guest = pve.guest(vmid)
    if guest is None:
        return None
    view = {'node': guest.node, 'status': guest.status, 'lock': guest.lock}
    if hasattr(guest, 'qmpstatus'):
        view['qmpstatus'] = guest.qmpstatus
    return view


async def command(pve, cmd):
    op = cmd['op']
    if op == 'add_vm':
        pve.add_vm(cmd['vmid'], cmd['name'], node=cmd.get('node', 'pve1'), status=cmd.get('status', 'stopped'),
                   template=cmd.get('template', False))
        return None
    if op == 'add_ct':
        pve.add_ct(cmd['vmid'], cmd['name'], node=cmd.get('node', 'pve1'), status=cmd.get('status', 'stopped'))
        return None
    if op == 'add_node':
        pve.add_node(cmd['name'], online=cmd.get('online', True))
        return None
    if op == 'node_online':
        pve.set_node_offline(cmd['name'], offline=not cmd['online'])
        return None
    if op == 'quorum':
        if cmd['quorate']:
            pve.regain_quorum()
        else:
            pve.lose_quorum()
        return None
    if op == 'set':
        # An attribute of a guest: shutdown_secs, start_error, ...
        setattr(pve.guest(cmd['vmid']), cmd['attr'], cmd['value'])
        return None
    if op == 'lock':
        pve.snapshot_lock(cmd['vmid'], cmd['lock'])
        return None
    if op == 'fail':
        pve.fail(cmd['method'], cmd['suffix'], status=cmd.get('status'), message=cmd.get('message'),
                 error=cmd.get('error'), times=cmd.get('times'), html=cmd.get('html', False))
        return None
    if op == 'time_scale':
        pve.time_scale = cmd['value']
        return None
    if op == 'hang':
        # Every request hangs this many PVE seconds before it is answered.
        pve.flaky_network(hang_rate=1.0 if cmd['secs'] else 0.0, hang_secs=cmd['secs'], seed=1)
        return None
    if op == 'guest':
        return guest_view(pve, cmd['vmid'])
    if op == 'tasks':
        return [dict((k, v) for k, v in task.items() if k != 'log') for task in pve.tasklog]
    if op == 'requests':
        return pve.seen
    raise ValueError('unknown op {0!r}'.format(op))


async def main(directory):
    certfile, keyfile, _ = make_cert(directory, hosts=(HOST,))
    schema = os.path.join(directory, 'pve-api.json')
    with open(schema, 'wb') as out:
        out.write(gzip.decompress(pkgutil.get_data('fakepve', 'data/pve-api.json.gz')))
    pve = RecordingPve(user='root@pam', password='secret', host=HOST, port=0)
    pve.time_scale = 0
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    await pve.start(certfile, keyfile)
    print(json.dumps({'port': pve.port, 'cert': certfile, 'schema': schema,
                      'token': '{0}={1}'.format(TOKEN_ID, TOKEN_SECRET)}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            try:
                answer = {'ok': await command(pve, json.loads(line))}
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the test
                answer = {'error': '{0}: {1}'.format(type(exc).__name__, exc)}
            print(json.dumps(answer), flush=True)
    finally:
        await pve.stop()


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1]))
