#!/usr/bin/env python3
"""A ConnectWise Manage stand-in for the benchmark, with real field names. Usage:
connectwise_fake.py PORT COUNT.

- Companies: COUNT of them (ids 1..COUNT), 1,000 a page with RFC 5988 Link headers, from pages
  built once at start (so its own cost per request is a socket write).
- Service tickets, for ticket-bound reveals: `GET …/service/tickets/{id}`. Ticket T belongs to
  company T // 100 (so 101 is an open ticket of company 1), on board 1; T % 100 == 99 is closed
  by `closedFlag`, T % 100 == 98 is in a status whose `closedStatus` is true; a company outside
  1..COUNT means 404 (ConnectWise's error body).
- Board statuses: `GET …/service/boards/{id}/statuses` (`[{id,name,closedStatus,…}]`; every board
  has the same three).
- Ticket notes: `POST …/service/tickets/{id}/notes` answers 201 with the note (`id`, `ticketId`,
  `text`, the flags), or 400 as ConnectWise does without `text` or without any of the three
  flags. Notes are counted, not kept: `GET /bench/notes` answers `{"count": N}`.
- `GET /bench/calls`: how many ticket, board-status and note calls it has answered (a warm
  ticket cache shows as a ticket count that stays put under load).
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, COUNT = int(sys.argv[1]), int(sys.argv[2])
PAGE_SIZE = 1000
WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Cyberdyne"]
# (id, name, closedStatus) of every board's statuses.
STATUSES = [(1, "New", False), (2, "In Progress", False), (6, "Closed", True)]
NOTE_FLAGS = ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")


def company(i):
    return {
        "id": i + 1,
        "identifier": f"{WORDS[i % len(WORDS)]}{i}",
        "name": f"{WORDS[i % len(WORDS)]} Corp {i}",
        "status": {"id": 1, "name": "Active", "_info": {"status_href": "https://x/status/1"}},
        "types": [{"id": 1, "name": "Client", "_info": {}}],
        "city": "Springfield",
        "deletedFlag": False,
        "_info": {"lastUpdated": "2026-01-01T00:00:00Z", "dateEntered": "2025-01-01T00:00:00Z"},
    }


def ticket(ticket_id):
    """The ticket record of `ticket_id`, or None when it does not exist."""
    cw_company = ticket_id // 100
    if not 1 <= cw_company <= COUNT:
        return None
    i = cw_company - 1
    status_id = 6 if ticket_id % 100 == 98 else 2
    status_name = next(name for sid, name, _ in STATUSES if sid == status_id)
    record = {
        "id": ticket_id,
        "summary": f"Ticket {ticket_id}: printer offline",
        "recordType": "ServiceTicket",
        "board": {"id": 1, "name": "Help Desk", "_info": {"board_href": "https://x/apis/3.0/service/boards/1"}},
        "status": {"id": status_id, "name": status_name,
                   "_info": {"status_href": f"https://x/apis/3.0/service/boards/1/statuses/{status_id}"}},
        "company": {"id": cw_company, "identifier": f"{WORDS[i % len(WORDS)]}{i}",
                    "name": f"{WORDS[i % len(WORDS)]} Corp {i}",
                    "_info": {"company_href": f"https://x/apis/3.0/company/companies/{cw_company}"}},
        "contact": {"id": 7, "name": "Pat Doe"},
        "priority": {"id": 4, "name": "Priority 3 - Normal Response", "sort": 6},
        "closedFlag": ticket_id % 100 == 99,
        "_info": {"lastUpdated": "2026-01-01T12:00:00Z", "updatedBy": "tech1",
                  "dateEntered": "2026-01-01T09:00:00Z", "enteredBy": "tech1"},
    }
    if record["closedFlag"]:
        record["closedDate"] = "2026-01-02T10:00:00Z"
        record["closedBy"] = "tech1"
    return record


def board_statuses(board_id):
    return [
        {"id": sid, "name": name, "board": {"id": board_id, "name": "Help Desk"}, "sortOrder": sid,
         "displayOnBoard": True, "inactive": False, "closedStatus": closed, "timeEntryNotAllowed": False,
         "defaultFlag": sid == 1, "escalationStatus": "NotResponded",
         "_info": {"lastUpdated": "2025-01-01T00:00:00Z", "updatedBy": "admin"}}
        for sid, name, closed in STATUSES
    ]


PAGES = []
for start in range(0, COUNT, PAGE_SIZE):
    PAGES.append(json.dumps([company(i) for i in range(start, min(start + PAGE_SIZE, COUNT))]).encode())

NOTES = {"count": 0}
NOTES_LOCK = threading.Lock()
CALLS = {"tickets": 0, "statuses": 0, "notes": 0}


def count(kind):
    with NOTES_LOCK:
        CALLS[kind] += 1


def segments_after_api(path):
    """The path's segments after `/apis/3.0/`, or None."""
    if "/apis/3.0/" not in path:
        return None
    return path.split("/apis/3.0/", 1)[1].strip("/").split("/")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def not_found(self, what):
        self.answer(404, {"code": "NotFound", "message": f"{what} not found", "errors": None})

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/bench/notes":
            with NOTES_LOCK:
                return self.answer(200, {"count": NOTES["count"]})
        if url.path == "/bench/calls":
            with NOTES_LOCK:
                return self.answer(200, dict(CALLS))
        seg = segments_after_api(url.path)
        if seg == ["company", "companies"]:
            page = int(parse_qs(url.query).get("page", ["1"])[0])
            body = PAGES[page - 1] if 1 <= page <= len(PAGES) else b"[]"
            headers = []
            if page < len(PAGES):
                nxt = f"http://127.0.0.1:{PORT}{url.path}?page={page + 1}&pageSize={PAGE_SIZE}"
                headers.append(("link", f'<{nxt}>; rel="next"'))
            return self.answer(200, body, headers)
        if seg and len(seg) == 3 and seg[:2] == ["service", "tickets"] and seg[2].isdigit():
            count("tickets")
            record = ticket(int(seg[2]))
            return self.answer(200, record) if record else self.not_found("Ticket")
        if seg and len(seg) == 4 and seg[:2] == ["service", "boards"] and seg[2].isdigit() and seg[3] == "statuses":
            count("statuses")
            first = f"http://127.0.0.1:{PORT}{url.path}?page=1"
            return self.answer(200, board_statuses(int(seg[2])),
                               [("link", f'<{first}>; rel="first", <{first}>; rel="last"')])
        self.not_found("Resource")

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        seg = segments_after_api(url.path)
        if not (seg and len(seg) == 4 and seg[:2] == ["service", "tickets"] and seg[2].isdigit() and seg[3] == "notes"):
            return self.not_found("Resource")
        count("notes")
        ticket_id = int(seg[2])
        if ticket(ticket_id) is None:
            return self.not_found("Ticket")
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return self.answer(400, {"code": "InvalidObject", "message": "The request body is not JSON", "errors": None})

        def invalid(field, message):
            self.answer(400, {"code": "InvalidObject", "message": "ticketNote object is invalid",
                              "errors": [{"code": "InvalidField", "message": message, "resource": "ticketNote",
                                          "field": field}]})

        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            return invalid("text", "The text field is required.")
        if not any(body.get(flag) is True for flag in NOTE_FLAGS):
            return invalid("detailDescriptionFlag",
                           "At least one of detailDescriptionFlag, internalAnalysisFlag or resolutionFlag must be true.")
        with NOTES_LOCK:
            NOTES["count"] += 1
            note_id = NOTES["count"]
        note = {"id": note_id, "ticketId": ticket_id, "text": body["text"]}
        note.update({flag: body.get(flag) is True for flag in NOTE_FLAGS})
        note.update({"dateCreated": "2026-01-01T12:00:00Z", "createdBy": "bench",
                     "_info": {"lastUpdated": "2026-01-01T12:00:00Z", "updatedBy": "bench"}})
        self.answer(201, note)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
