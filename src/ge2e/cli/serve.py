"""``ge2e serve``: the speaker verification HTTP service (FastAPI + uvicorn; ``pip install ge2e[serve]``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from typing import Any

from ge2e.cli import _serve_keys as keys
from ge2e.cli._model import add_model_options, open_model

logger = logging.getLogger(__name__)

SPARE_FILES = 128  # descriptors besides connections: the database, the model, libraries, the listening socket


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the speaker verification HTTP service",
        # argparse would print the optional `keys` subcommand as a required positional
        usage="ge2e serve --db FILE [options]\n       ge2e serve keys {add,list,revoke} --db FILE ...",
        description="Serve enroll / verify / identify / embed over HTTP (OpenAPI docs at /docs). API keys belong "
        "to tenants and have roles; create them with 'ge2e serve keys add'. Keys from the environment variable "
        "GE2E_API_KEYS (comma-separated) and --api-key-file are admin keys of the 'default' tenant. The service "
        "refuses to start without any key.",
    )
    p.add_argument("--db", metavar="FILE", help="SQLite speaker database (created if missing); required")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    add_model_options(p)
    p.add_argument(
        "--threshold", type=float, metavar="T", help="accept when cosine score >= T (default: the model's calibration)"
    )
    p.add_argument("--api-key-file", metavar="FILE", help="file of API keys, one per line ('#' comments)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="request body limit in MiB (default 10)")
    p.add_argument("--max-audio-seconds", type=float, default=60.0, help="audio limit per file (default 60)")
    p.add_argument("--max-enroll-files", type=int, default=10, help="audio files per enrollment (default 10)")
    p.add_argument("--workers", type=int, default=1, help="inference threads (default 1)")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait for a thread; more get 503 (default 8)")
    p.add_argument(
        "--read-timeout", type=float, default=30.0, metavar="S", help="seconds to receive a request body (default 30)"
    )
    p.add_argument(
        "--rate-limit", type=int, default=600, metavar="N", help="requests per minute per key (default 600; 0: off)"
    )
    p.add_argument(
        "--max-requests", type=int, default=64, metavar="N", help="requests served at once; more get 503 (default 64)"
    )
    p.add_argument(
        "--max-connections", type=int, default=1024, metavar="N", help="open connections; more get 503 (default 1024)"
    )
    p.add_argument(
        "--max-connections-per-client",
        type=int,
        default=32,
        metavar="N",
        help="open connections per client address; more get 503 (default 32; 0: off, as behind a proxy)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to receive a request head, after connecting or the previous response (default 10)",
    )
    p.add_argument(
        "--keep-alive", type=int, default=5, metavar="S", help="seconds an idle keep-alive connection stays (default 5)"
    )
    p.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="uvicorn log level"
    )
    p.set_defaults(func=run)
    keys.register(p)


def _check_limits(args: argparse.Namespace) -> None:
    from ge2e.errors import ConfigError

    checks = [
        (1 <= args.port <= 65535, f"--port must be in 1..65535, got {args.port}"),
        (args.max_upload_mb > 0, "--max-upload-mb must be > 0"),
        (args.max_audio_seconds > 0, "--max-audio-seconds must be > 0"),
        (args.max_enroll_files >= 1, "--max-enroll-files must be >= 1"),
        (args.workers >= 1, "--workers must be >= 1"),
        (args.queue >= 0, "--queue must be >= 0"),
        (args.threads >= 1, "--threads must be >= 1"),
        (args.threshold is None or -1.0 <= args.threshold <= 1.0, "--threshold must be a cosine score in [-1, 1]"),
        (args.db is not None, "--db is required"),
        (args.read_timeout > 0, "--read-timeout must be > 0"),
        (args.rate_limit >= 0, "--rate-limit must be >= 0"),
        (args.max_requests >= 1, "--max-requests must be >= 1"),
        (args.max_connections >= 1, "--max-connections must be >= 1"),
        (args.max_connections_per_client >= 0, "--max-connections-per-client must be >= 0"),
        (args.header_timeout > 0, "--header-timeout must be > 0"),
        (args.keep_alive >= 1, "--keep-alive must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _raise_open_file_limit(max_connections: int) -> None:
    """Each connection is a file descriptor: raise the soft limit to what ``--max-connections`` needs, up to the
    hard limit (as nginx's ``worker_rlimit_nofile``), so that accepting fails with a 503 rather than EMFILE."""
    from ge2e.errors import ConfigError

    try:
        import resource
    except ImportError:  # not Unix: the platform's own limit applies
        return
    need = max_connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ConfigError(
            f"--max-connections {max_connections} needs {need} open files, but this process may open {hard} "
            "(ulimit -Hn): lower --max-connections or raise the limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    from ge2e.errors import ConfigError, Ge2eError

    _check_limits(args)
    _raise_open_file_limit(args.max_connections)
    try:
        import uvicorn

        from ge2e.serve import ServeConfig, SpeakerStore, create_app
        from ge2e.serve.auth import load_keys
        from ge2e.serve.connections import guarded_protocol
    except ImportError as exc:
        raise Ge2eError(
            f"the service needs the serve extra ({exc.name} is missing): pip install 'ge2e[serve]'"
        ) from None
    from ge2e.inference import model_fingerprint
    from ge2e.pretrained import default_threshold

    env_keys = load_keys(args.api_key_file)
    if not env_keys and not keys.database_has_keys(args.db):
        raise ConfigError(
            f"no API key configured: add one with 'ge2e serve keys add --db {args.db} --tenant NAME --role admin', "
            "or set GE2E_API_KEYS / pass --api-key-file"
        )
    model = open_model(args)
    threshold = default_threshold(model) if args.threshold is None else args.threshold
    fingerprint = model_fingerprint(model)[:16]  # the model file's SHA-256, as everywhere; 16 digits in the API
    store = SpeakerStore(args.db, fingerprint, model.embedding_size)
    config = ServeConfig(
        threshold=threshold,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_audio_seconds=args.max_audio_seconds,
        max_enroll_files=args.max_enroll_files,
        workers=args.workers,
        queue=args.queue,
        read_timeout_s=args.read_timeout,
        rate_per_minute=args.rate_limit,
        max_requests=args.max_requests,
        header_timeout_s=args.header_timeout,
        max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
    )
    app = create_app(model, store, env_keys, config, fingerprint)
    if not _is_loopback(args.host):
        logger.warning("listening on %s over plain HTTP: put a TLS-terminating proxy in front of it", args.host)
    print(
        f"ge2e serve: model {fingerprint} (threshold {threshold:.4f}), {len(env_keys)} key(s) from the environment "
        f"besides the database's, database {args.db}; "
        f"docs at http://{args.host}:{args.port}/docs",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        http=guarded_protocol(app.state.service.connections),
        timeout_keep_alive=args.keep_alive,
    )
    return 0
