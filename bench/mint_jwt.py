#!/usr/bin/env python3
"""Mints a JWT for the benchmark with the Python standard library and the openssl CLI.

    mint_jwt.py --alg HS256 --key jwt-hmac.secret --sub bench@corp.test --iss ISS --aud AUD
    mint_jwt.py --alg ES256 --key es256-private.pem --sub ... --iss ... --aud ...

HS256 is signed with hmac/hashlib. ES256 is signed by `openssl dgst -sha256 -sign`, whose DER
ECDSA-Sig-Value is converted to the raw 64-byte r||s that JWS requires (RFC 7518 section 3.4).
"""

import argparse
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def der_to_raw(der: bytes, size: int = 32) -> bytes:
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> r||s, each `size` bytes."""

    def length(buf: bytes, i: int):
        first = buf[i]
        if first < 0x80:
            return first, i + 1
        n = first & 0x7F
        return int.from_bytes(buf[i + 1 : i + 1 + n], "big"), i + 1 + n

    if der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    _, i = length(der, 1)
    out = b""
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("not a DER INTEGER")
        n, i = length(der, i + 1)
        value = int.from_bytes(der[i : i + n], "big")
        i += n
        out += value.to_bytes(size, "big")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alg", choices=["HS256", "ES256"], required=True)
    p.add_argument("--key", required=True, help="HMAC secret file or EC P-256 private key PEM")
    p.add_argument("--sub", required=True)
    p.add_argument("--iss", required=True)
    p.add_argument("--aud", required=True)
    p.add_argument("--ttl", type=int, default=4 * 3600, help="seconds until exp")
    p.add_argument("--jti", default=None, help="optional jti claim (distinct tokens)")
    a = p.parse_args()

    now = int(time.time())
    header = {"alg": a.alg, "typ": "JWT"}
    claims = {"sub": a.sub, "iss": a.iss, "aud": a.aud, "iat": now, "exp": now + a.ttl}
    if a.jti:
        claims["jti"] = a.jti
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    ).encode("ascii")

    if a.alg == "HS256":
        with open(a.key, "rb") as f:
            secret = f.read()
        sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    else:
        der = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", a.key],
            input=signing_input,
            capture_output=True,
            check=True,
        ).stdout
        sig = der_to_raw(der)
    sys.stdout.write(signing_input.decode("ascii") + "." + b64url(sig) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
