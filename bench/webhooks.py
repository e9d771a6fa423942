#!/usr/bin/env python3
"""Webhook delivery of N events to a local receiver: throughput and delay from event to delivery.

Used by bench/webhooks.sh (which starts `ttscm serve` and the receiver). Makes one credential,
registers an endpoint for `credential.revealed`, reveals the credential N times from C threads
(each reveal is one event), waits until the receiver verified N distinct deliveries, and prints
the figures: delivery throughput, and the delay from each event's `time` to the receiver's
arrival time (same host clock), p50/p99/max.
"""
import argparse, datetime, http.client, json, statistics, threading, time, urllib.parse

p = argparse.ArgumentParser()
p.add_argument("--base", required=True)
p.add_argument("--token", required=True)
p.add_argument("--receiver", required=True)
p.add_argument("--events", type=int, default=10000)
p.add_argument("--conns", type=int, default=8)
a = p.parse_args()
base = urllib.parse.urlparse(a.base)
recv = urllib.parse.urlparse(a.receiver)


def call(conn, method, path, body=None, host=base, token=a.token):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data else None)


c = http.client.HTTPConnection(base.hostname, base.port)
s, company = call(c, "POST", "/v1/company/companies", {"name": "Bench Co"})
assert s == 201, (s, company)
s, typ = call(c, "POST", "/v1/credential-type/credential-types", {"name": "Bench Type", "fields": [
    {"id": "password", "name": "Password", "required": True, "secure": True, "valueType": "password"}]})
assert s == 201, (s, typ)
s, cred = call(c, "POST", "/v1/credential/credentials", {"name": "Bench", "typeId": typ["data"]["id"],
    "companyId": company["data"]["id"], "fields": [{"fieldId": "password", "value": "bench-secret"}]})
assert s == 201, (s, cred)
cred_id = cred["data"]["id"]
s, ep = call(c, "POST", "/v1/webhook/endpoints", {"url": a.receiver + "/hook", "eventTypes": ["credential.revealed"]})
assert s == 201, (s, ep)
rc = http.client.HTTPConnection(recv.hostname, recv.port)
s, _ = call(rc, "POST", "/control/secrets", {"secrets": [ep["data"]["secret"]]}, token=None)
assert s == 200

per_thread = [a.events // a.conns + (1 if i < a.events % a.conns else 0) for i in range(a.conns)]
errors = []


def reveal(n):
    conn = http.client.HTTPConnection(base.hostname, base.port)
    for _ in range(n):
        st, _ = call(conn, "GET", f"/v1/credential/credentials/{cred_id}/secure-values")
        if st != 200:
            errors.append(st)


started = time.time()
threads = [threading.Thread(target=reveal, args=(n,)) for n in per_thread]
for t in threads:
    t.start()
for t in threads:
    t.join()
generated = time.time()
deadline = time.time() + 600
while True:
    rc = http.client.HTTPConnection(recv.hostname, recv.port)
    rc.request("GET", "/control/received")
    received = json.loads(rc.getresponse().read())
    ids = {d["id"] for d in received if d["verifiedWith"] and 200 <= d["status"] < 300}
    if len(ids) >= a.events or time.time() > deadline:
        break
    time.sleep(0.2)
done = time.time()


def ms(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


first = {}
for d in received:
    first.setdefault(d["id"], d)
delays = sorted(d["at"] - ms(json.loads(d["body"])["time"]) for d in first.values())
last_at = max(d["at"] for d in first.values()) / 1000
q = lambda f: delays[min(len(delays) - 1, int(f * len(delays)))]
print(json.dumps({
    "events": a.events,
    "revealErrors": len(errors),
    "delivered": len(ids),
    "repeats": len(received) - len(first),
    "unverified": sum(1 for d in received if not d["verifiedWith"]),
    "revealSecs": round(generated - started, 2),
    "revealPerSec": round(a.events / (generated - started)),
    "deliverySecs": round(last_at - started, 2),
    "deliveriesPerSec": round(len(ids) / (last_at - started)),
    "delayMs": {"p50": round(q(0.5), 1), "p99": round(q(0.99), 1), "max": round(delays[-1], 1),
                "mean": round(statistics.mean(delays), 1)},
}, indent=2))
