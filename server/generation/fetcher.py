"""Our own downloader for Replicate output files, built so a URL cannot reach inside our network.

An output URL comes from a third party (and, through a webhook, from whoever can sign one), so it is
treated as hostile:
- https only, to a host on `replicate_output_hosts` (exact name, or `*.suffix` for any subdomain);
- the name is resolved here and every address must be public: loopback, private, link-local (the
  cloud metadata service at 169.254.169.254), multicast and reserved ranges are refused; the request
  then goes to the address we checked (the name kept for TLS and Host), so DNS cannot change its
  answer between the check and the connection;
- redirects are never followed by the client: at most `MAX_REDIRECTS` are followed here, each hop
  checked again like the first;
- a size cap (`generation_max_output_bytes`, enforced while streaming) and a time cap for the whole
  download (`generation_fetch_timeout_s`);
- no credentials: this client has no Authorization header, so the API token never leaves for an
  output host.

Test mode: with `replicate_allow_loopback_outputs` (refused in production at start) a loopback host
(`localhost`, 127.0.0.0/8, ::1) is accepted, and only for such a host plain http too, because the
local fake Replicate has no TLS certificate. Every other rule still applies.

The content is checked after the download: an image must decode with Pillow (PNG, WebP or JPEG);
a video must be an MP4 (`ftyp` box) that PyAV can open, and its first frame becomes the poster.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from server.generation import OutputRefused
from server.settings import Settings

MAX_REDIRECTS = 3
IMAGE_FORMATS = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Target:
    """A checked hop: where to connect (a vetted address) and the name to present there."""

    url: httpx.URL
    host: str
    address: IPAddress


class OutputFetcher:
    """`fetch(url) -> bytes` under the rules above; raises OutputRefused with plain words."""

    def __init__(self, settings: Settings) -> None:
        self.hosts = [h.strip().lower().rstrip(".") for h in settings.replicate_output_hosts if h.strip()]
        self.allow_loopback = settings.replicate_allow_loopback_outputs
        self.max_bytes = settings.generation_max_output_bytes
        self.timeout_s = settings.generation_fetch_timeout_s
        self.max_pixels = settings.max_image_pixels
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(min(30.0, self.timeout_s)),
            headers={"User-Agent": "silvertalk-output-fetcher"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch(self, url: str) -> bytes:
        """The body of `url` (after at most MAX_REDIRECTS checked redirects). Raises OutputRefused."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(url)
        except TimeoutError:
            raise OutputRefused(f"the download took longer than {self.timeout_s:g} seconds") from None

    async def _fetch(self, url: str) -> bytes:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            target = await self.check(current)
            headers = {"Host": _host_header(target.url, target.host)}
            pinned = target.url.copy_with(host=str(target.address))
            extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
            try:
                request = self._http.build_request("GET", pinned, headers=headers, extensions=extensions)
                response = await self._http.send(request, stream=True)
            except httpx.HTTPError as e:
                raise OutputRefused(f"the output could not be downloaded ({type(e).__name__})") from e
            try:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise OutputRefused("the output host sent a redirect without a location")
                    current = str(target.url.join(location))
                    continue
                if response.status_code != 200:
                    raise OutputRefused(f"the output host answered {response.status_code}")
                return await self._read_capped(response)
            finally:
                await response.aclose()
        raise OutputRefused(f"the output URL redirected more than {MAX_REDIRECTS} times")

    async def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise OutputRefused(f"the output is larger than the {self.max_bytes} byte limit")
        buf = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                buf += chunk
                if len(buf) > self.max_bytes:
                    raise OutputRefused(f"the output is larger than the {self.max_bytes} byte limit")
        except httpx.HTTPError as e:
            raise OutputRefused(f"the output download broke off ({type(e).__name__})") from e
        if not buf:
            raise OutputRefused("the output file is empty")
        return bytes(buf)

    async def check(self, url: str) -> Target:
        """Vet one hop: scheme, host allow-list, and every address the name resolves to."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise OutputRefused("the output URL is not a valid URL") from None
        host = parsed.host.lower().rstrip(".")
        if not host:
            raise OutputRefused("the output URL has no host")
        if parsed.userinfo:
            raise OutputRefused("the output URL carries credentials, which we refuse")
        loopback_name = _is_loopback_name(host)
        test_loopback = self.allow_loopback and loopback_name
        if parsed.scheme != "https" and not (parsed.scheme == "http" and test_loopback):
            raise OutputRefused(f"only https output URLs are accepted, not {parsed.scheme}://")
        if not test_loopback and not self.host_allowed(host):
            raise OutputRefused(f"the output host {host} is not on the allowed list")
        addresses = await self._resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
        for address in addresses:
            if address.is_loopback and self.allow_loopback:
                continue
            if not _is_public(address):
                raise OutputRefused(f"the output host {host} points at {address}, a private address")
        return Target(url=parsed, host=host, address=addresses[0])

    def host_allowed(self, host: str) -> bool:
        for allowed in self.hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
                    return True
            elif host == allowed:
                return True
        return False

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = _ip(host)
        if literal is not None:
            return [literal]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise OutputRefused(f"the output host {host} could not be found") from e
        found: list[IPAddress] = []
        for info in infos:
            address = _ip(str(info[4][0]))
            if address is not None and address not in found:
                found.append(address)
        if not found:
            raise OutputRefused(f"the output host {host} could not be found")
        # IPv4 first: the address we connect to is the first one, and ::1 is often not listened on.
        return sorted(found, key=lambda a: a.version)

    def inspect_image(self, data: bytes) -> str:
        """The content type of a decodable PNG/WebP/JPEG (blocking: run in a thread)."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                if img.width * img.height > self.max_pixels:
                    raise OutputRefused("the picture has too many pixels")
                img.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise OutputRefused("the output is not a picture we can read") from e
        if fmt not in IMAGE_FORMATS:
            raise OutputRefused(f"the picture is in an unexpected format ({fmt or 'unknown'})")
        return IMAGE_FORMATS[fmt]

    def inspect_video(self, data: bytes) -> bytes:
        """A JPEG poster from the first frame of an MP4 (blocking: run in a thread)."""
        if len(data) < 12 or data[4:8] != b"ftyp":
            raise OutputRefused("the output is not an MP4 video")
        import av
        from PIL import Image

        try:
            with av.open(io.BytesIO(data), mode="r") as container:
                if not container.streams.video:
                    raise OutputRefused("the video has no picture track")
                frame = next(container.decode(video=0), None)
                if frame is None:
                    raise OutputRefused("the video has no frames")
                image: Image.Image = frame.to_image()
        except (av.FFmpegError, ValueError, OSError) as e:
            raise OutputRefused("the output is not a video we can read") from e
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=85)
        return out.getvalue()


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip(host)
    return address is not None and address.is_loopback


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast and not address.is_reserved


def _host_header(url: httpx.URL, host: str) -> str:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return host if url.port in (None, default) else f"{host}:{url.port}"
