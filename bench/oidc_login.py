"""Signs in to a TTSCM edge through its OpenID provider (the test `oidc-provider`), as a browser
would: GET /v1/auth/uri, the provider's login and consent forms (cookies kept, redirects not
followed), then the edge's redirect with `Accept: application/json`. Prints the access token and
the refresh token, one per line. Usage: oidc_login.py EDGE_URL LOGIN"""

import http.cookiejar
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main(edge: str, login: str) -> None:
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def fetch(url, data=None, headers=None):
        request = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    status, _, body = fetch(f"{edge}/v1/auth/uri")
    if status != 200:
        sys.exit(f"GET /v1/auth/uri answered {status}: {body[:300]!r}")
    url = json.loads(body)["data"]["uri"]
    provider = urllib.parse.urlsplit(url)[:2]
    for _ in range(12):
        status, headers, body = fetch(url)
        while status in (302, 303):
            url = urllib.parse.urljoin(url, headers["Location"])
            if urllib.parse.urlsplit(url)[:2] != provider:
                break
            status, headers, body = fetch(url)
        if urllib.parse.urlsplit(url)[:2] != provider:
            break
        if status != 200:
            sys.exit(f"the provider answered {status} at {url}: {body[:300]!r}")
        form = {"prompt": "login", "login": login, "password": "x"} if b'name="login"' in body else {"prompt": "consent"}
        status, headers, body = fetch(url, urllib.parse.urlencode(form).encode(),
                                      {"Content-Type": "application/x-www-form-urlencoded"})
        if status not in (302, 303):
            sys.exit(f"posting the {form['prompt']} form answered {status}: {body[:300]!r}")
        url = urllib.parse.urljoin(url, headers["Location"])
        if urllib.parse.urlsplit(url)[:2] != provider:
            break
    else:
        sys.exit("the sign-in did not reach the edge's redirect")
    target = urllib.parse.urlsplit(url)
    status, _, body = fetch(f"{edge}{target.path}?{target.query}", headers={"Accept": "application/json"})
    if status != 200:
        sys.exit(f"the redirect answered {status}: {body[:300]!r}")
    data = json.loads(body)["data"]
    print(data["accessToken"])
    print(data["refreshToken"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
