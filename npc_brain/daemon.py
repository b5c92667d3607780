"""`npc-brain serve`: the daemon. One ROUTER socket, one loop, continuous batching.

The loop, in the order it runs (the ZeroMQ guide's style: short and explicit)::

    read every waiting frame  -> answer control messages now, queue `say`s (or OVERLOADED)
    collect read screenshots  -> a `say` whose screenshot asked for OCR waits for it off the loop
    expire deadlines          -> TIMEOUT for queued and running work past its deadline
    admit one queued `say`    -> prompt + persona-prefix cache + prefill  (a "slot")
    one decode step           -> every running slot advances one token, in one batch
    stream / finish           -> `partial`s at sentence ends, then exactly one `line`
    idle                      -> prefill the exchange just finished, for that conversation's next turn

New requests join between decode steps, so a long line never blocks a short
one for more than one prefill. Every `say` gets exactly one terminal reply.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zmq

from npc_brain import protocol as P
from npc_brain.character import Character, CharacterError, load_character
from npc_brain.config import DEFAULT_BUNDLE_DIR, OptionsError
from npc_brain.engine import Engine, LineRequest, Slot, acceptable, fallback_line, retry_options
from npc_brain.keys import (curve_client, curve_refusal, curve_server, is_loopback, load_client_curve,
                            start_authenticator)
from npc_brain.lines import claims_other_name, clean_line
from npc_brain.prompt import PromptError, Turn
from npc_brain.sessions import SessionStore, StateError

log = logging.getLogger("npc_brain.daemon")


@dataclass
class DaemonConfig:
    bind: str = "tcp://127.0.0.1:5555"
    max_active: int = 8  # slots decoded together
    # Queued lines started back to back before the next decode step, up to this much prefill time.
    # Prefill is one row at a time (the attention kernel allows no batched continuation), so the
    # trade is: a bigger budget fills the batch sooner (more tokens per step, a queued line's
    # first partial sooner), a smaller one stalls running lines for less between their tokens.
    # Measured at 8 conversations (docs/figures.md): filling every free slot first gives about
    # 16% more tokens/s and a better p95 first partial than 250 ms, for ~80 ms more at p50.
    prefill_budget_ms: float = 2000.0
    queue_capacity: int = 32  # waiting `say`s before OVERLOADED
    drain_timeout_s: float = 10.0
    deterministic: bool = False
    # While nothing else runs, prefill the exchange a line just finished, so the conversation's next
    # turn (seconds later, in a game) prefills only the player's new words (docs/figures.md). Only
    # after this long idle: a client that answers at once (a script, a load test) would otherwise
    # wait for that prefill, which its own turn then does anyway.
    prefill_ahead: bool = True
    prefill_ahead_after_ms: float = 20.0
    prefill_ahead_max: int = 64  # conversations waiting to be prefilled ahead; the oldest go first
    state_dir: Path | None = None
    curve_secret: Path | None = None  # server secret key file (npc-brain keys)
    curve_clients: Path | None = None  # folder of allowed client public keys
    debug_hooks: bool = False  # enables the test-only `debug_pause` message
    record: Path | None = None  # append every line said to this JSONL file (`npc-brain replay` reads it)
    record_max_mb: float = 256.0  # then the file rotates to FILE.1 .. FILE.4
    registered_max: int = 1024
    worker_connect: str | None = None  # scale-out: connect to a broker's backend instead of binding
    curve_client_secret: Path | None = None  # worker: its own secret key file (the broker allows its public key)
    curve_server_public: Path | None = None  # worker: the broker's public key file

    def curve_refusal(self) -> str | None:
        """Why these settings may not be served (CurveZMQ missing or half given), or None."""
        if self.worker_connect:
            return curve_refusal("connecting to", self.worker_connect,
                                 {"--curve-client-secret WORKER.key_secret": self.curve_client_secret,
                                  "--curve-server-public BROKER.key": self.curve_server_public})
        return curve_refusal("binding", self.bind, {"--curve-secret SERVER.key_secret": self.curve_secret,
                                                    "--curve-clients DIR": self.curve_clients})


@dataclass
class Job:
    identity: bytes
    say: P.Say
    character: Character
    fingerprint: str
    received: float
    deadline: float | None
    history: list[Turn]
    scene: dict[str, Any]
    vision_ms: float = 0.0
    seeing: Future | None = None  # the screenshot being read off the loop (OCR), until it is done
    slot: Slot | None = None
    sent: str = ""  # streamed text so far
    seq: int = 0
    retries: int = 0


class Daemon:
    def __init__(self, engine: Engine, cfg: DaemonConfig, ctx: zmq.Context | None = None):
        self.engine = engine
        self.cfg = cfg
        self.ctx = ctx or zmq.Context.instance()
        self.sessions = SessionStore(state_dir=cfg.state_dir)
        self.registered: OrderedDict[str, Character] = OrderedDict()
        self.queue: deque[Job] = deque()
        # `say`s whose screenshot is read in a helper thread (OCR takes ~300 ms; the loop keeps decoding)
        self.seeing: list[Job] = []
        self._see_pool: ThreadPoolExecutor | None = None
        self.active: list[Job] = []
        # conversations whose next turn's history is not prefilled yet: (npc, session) -> (sheet, history)
        self.ahead: OrderedDict[tuple[str, str], tuple[Character, list[Turn]]] = OrderedDict()
        self.last_line_at = 0.0
        self.inflight: dict[tuple[bytes, str], Job] = {}
        self.replies: OrderedDict[tuple[bytes, str], tuple[str, float, bytes]] = OrderedDict()
        self.started = time.monotonic()
        self.ready = False
        self.draining = False
        self.paused_until = 0.0
        self.sock: zmq.Socket | None = None
        self.auth = None
        self._last_beat = 0.0
        self.generated = 0  # lines the model produced (retries served from cache do not count)
        self.recorder = None
        if cfg.record is not None:
            from npc_brain.replay import Recorder

            self.recorder = Recorder(cfg.record, max_bytes=int(cfg.record_max_mb * (1 << 20)))

    # --- socket -------------------------------------------------------------------
    def open_socket(self) -> zmq.Socket:
        if self.cfg.worker_connect:
            return self._open_worker_socket()
        s = self.ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a reply to a vanished client raises instead of vanishing
        s.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a client reconnecting with its routing id takes it over
        s.setsockopt(zmq.LINGER, 1000)
        s.setsockopt(zmq.MAXMSGSIZE, P.MAX_FRAME_BYTES + 1024)
        s.setsockopt(zmq.HEARTBEAT_IVL, 5000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
        s.setsockopt(zmq.HEARTBEAT_TTL, 15000)
        s.setsockopt(zmq.SNDHWM, 10000)
        if not is_loopback(self.cfg.bind) or self.cfg.curve_secret or self.cfg.curve_clients:
            self._enable_curve(s)
        s.bind(self.cfg.bind)
        self.sock = s
        return s

    def _open_worker_socket(self) -> zmq.Socket:
        """Behind a broker the frames are the same ([client id, payload]); a DEALER carries them."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 1000)
        s.setsockopt(zmq.MAXMSGSIZE, P.MAX_FRAME_BYTES + 1024)
        self._check_curve()
        if self.cfg.curve_client_secret:
            curve_client(s, load_client_curve(self.cfg.curve_client_secret, self.cfg.curve_server_public))
        s.connect(self.cfg.worker_connect)
        self.sock = s
        return s

    def heartbeat(self) -> None:
        from npc_brain.broker import CONTROL, HEARTBEAT_S

        now = time.monotonic()
        if self.cfg.worker_connect and self.ready and now - self._last_beat >= HEARTBEAT_S:
            self._last_beat = now
            free = self.cfg.max_active + self.cfg.queue_capacity
            self.sock.send_multipart([CONTROL, msgpack.packb({"type": "heartbeat", "capacity": free})])

    def _check_curve(self) -> None:
        why = self.cfg.curve_refusal()
        if why:
            raise SystemExit(f"error: {why}")

    def _enable_curve(self, s: zmq.Socket) -> None:
        self._check_curve()
        self.auth = start_authenticator(self.ctx, {"clients": self.cfg.curve_clients})
        curve_server(s, self.cfg.curve_secret, "clients")

    def send(self, identity: bytes, msg: dict[str, Any]) -> bytes:
        frame = P.encode(msg)
        try:
            self.sock.send_multipart([identity, frame], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:  # client gone (ROUTER_MANDATORY) or its queue full: nothing to answer to
            log.debug("could not reply to %r: %s", identity, e)
        return frame

    # --- lifecycle ----------------------------------------------------------------
    def warm_up(self) -> None:
        """Ready means a real inference has run, not just that files were opened."""
        import numpy as np

        self.engine.lm.forward(np.array([[self.engine.prompts.im_start]]), self.engine.lm.empty(), decode=True)
        self.ready = True
        from npc_brain.screen_text import available

        if available():  # load the OCR models now, off the loop, so the first sign read costs no more than the next
            self._see_pool_started().submit(self.engine.text_reader)

    def serve(self) -> int:
        self.open_socket()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        log.info("listening on %s (bundle %s)", self.cfg.bind, self.engine.bundle.bundle_id)
        self.warm_up()
        log.info("ready")
        drain_deadline = None
        while True:
            if self.draining and drain_deadline is None:
                drain_deadline = time.monotonic() + self.cfg.drain_timeout_s
                log.info("draining: %d running, %d queued", len(self.active), len(self.queue))
            self.heartbeat()
            busy = bool(self.active or self.queue) and time.monotonic() >= self.paused_until
            if self.sock.poll(self._poll_ms(busy)):
                self.read_all()
            self.collect_seen()
            self.expire()
            if time.monotonic() >= self.paused_until:
                self.run_guarded(self.admit)
                self.run_guarded(self.decode_step)
            # read after the step: a line may just have ended, and then the idle wait starts again
            if self._may_prefill_ahead() and time.monotonic() >= self._ahead_at():
                self.prefill_ahead()
            if self.draining and not self.active and not self.queue and not self.seeing:
                break
            if drain_deadline is not None and time.monotonic() > drain_deadline:
                for job in self.seeing + list(self.queue) + list(self.active):
                    self.fail(job, P.ErrorCode.CANCELLED, "the daemon is shutting down")
                break
        self.sock.close(linger=1000)
        if self._see_pool is not None:
            self._see_pool.shutdown(wait=False, cancel_futures=True)
        if self.recorder is not None:
            self.recorder.close()
        if self.auth:
            self.auth.stop()
        log.info("stopped cleanly")
        return 0

    def run_guarded(self, step) -> None:
        """A failure inside the model costs the requests it touched, never the daemon."""
        try:
            step()
        except Exception as e:  # noqa: BLE001
            log.exception("internal error in %s", step.__name__)
            for job in list(self.active):
                self.fail(job, P.ErrorCode.INTERNAL, f"internal error: {type(e).__name__}")

    def _on_signal(self, signum, frame) -> None:
        self.draining = True

    # --- incoming -------------------------------------------------------------------
    def read_all(self, limit: int = 1000) -> None:
        for _ in range(limit):
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.handle(frames)
            except Exception as e:  # a bug must cost one request, never the daemon
                log.exception("internal error")
                ident = frames[0] if frames else b""
                self.send(ident, P.error_msg(P.ErrorCode.INTERNAL, f"internal error: {type(e).__name__}"))

    def handle(self, frames: list[bytes]) -> None:
        try:
            identity, payload = P.split_envelope(frames)
        except P.ProtocolError as e:
            self.send(getattr(e, "identity", frames[0] if frames else b""), P.error_from(e))
            return
        if self.cfg.debug_hooks and self._debug(payload):
            return
        try:
            req = P.parse_request(payload)
        except P.ProtocolError as e:
            self.send(identity, P.error_from(e))
            return
        handler = getattr(self, "on_" + type(req).__name__.lower())
        handler(identity, req, payload)

    def _debug(self, payload: bytes) -> bool:
        """Test hook: {"type": "debug_pause", "ms": N} stops admission and decoding for N ms
        (the socket is still read), so a test can fill the queue deterministically."""
        try:
            msg = P.decode(payload)
        except P.ProtocolError:
            return False
        if msg.get("type") != "debug_pause":
            return False
        self.paused_until = time.monotonic() + min(int(msg.get("ms", 0)), 60_000) / 1000
        return True

    def _status_fields(self) -> dict[str, Any]:
        return dict(live=True, ready=self.ready and not self.draining, bundle_id=self.engine.bundle.bundle_id,
                    queue_depth=len(self.queue) + len(self.seeing), active=len(self.active),
                    capacity=self.cfg.queue_capacity + self.cfg.max_active,
                    uptime_s=time.monotonic() - self.started)

    def on_hello(self, ident: bytes, req: P.Hello, payload: bytes) -> None:
        try:
            version = P.negotiate(req)
        except P.ProtocolError as e:
            self.send(ident, P.error_from(e))
            return
        self.send(ident, P.welcome_msg(bundle_id=self.engine.bundle.bundle_id, server="npc-brain",
                                       version=version, request_id=req.id))

    def on_status(self, ident: bytes, req: P.Status, payload: bytes) -> None:
        from npc_brain.screen_text import available

        self.send(ident, P.status_msg(req.id, **self._status_fields(), sessions=len(self.sessions),
                                      read_text=available(),
                                      lines_generated=self.generated,
                                      persona_cache=self.engine.persona_cache.stats(),
                                      history_cache=self.engine.history_cache.stats()))

    def on_health(self, ident: bytes, req: P.Health, payload: bytes) -> None:
        self.send(ident, P.health_msg(req.id, **self._status_fields()))

    def on_register(self, ident: bytes, req: P.Register, payload: bytes) -> None:
        try:
            c = load_character(req.character)
        except CharacterError as e:
            self.send(ident, P.error_msg(P.ErrorCode.BAD_CHARACTER, str(e), req.id))
            return
        ref = self._remember(c)
        self.send(ident, P.registered_msg(req.id, ref))

    def _remember(self, c: Character) -> str:
        ref = c.sheet_hash()[:32]
        self.registered[ref] = c
        self.registered.move_to_end(ref)
        while len(self.registered) > self.cfg.registered_max:
            self.registered.popitem(last=False)
        return ref

    def on_cancel(self, ident: bytes, req: P.Cancel, payload: bytes) -> None:
        job = self.inflight.get((ident, req.target))
        if job is not None:
            self.fail(job, P.ErrorCode.CANCELLED, "cancelled by the client")
        self.send(ident, P.ok_msg(req.id))

    def on_resetsession(self, ident: bytes, req: P.ResetSession, payload: bytes) -> None:
        self.sessions.reset(req.npc, req.session)
        self.ahead.pop((req.npc, req.session), None)
        self.send(ident, P.ok_msg(req.id))

    def on_exportsession(self, ident: bytes, req: P.ExportSession, payload: bytes) -> None:
        self.send(ident, P.session_state_msg(req.id, req.npc, req.session, self.sessions.export(req.npc, req.session)))

    def on_importsession(self, ident: bytes, req: P.ImportSession, payload: bytes) -> None:
        try:
            self.sessions.import_(req.npc, req.session, req.state)
        except StateError as e:
            self.send(ident, P.error_msg(P.ErrorCode.BAD_STATE, str(e), req.id))
            return
        self.send(ident, P.ok_msg(req.id))

    def on_say(self, ident: bytes, req: P.Say, payload: bytes) -> None:
        now = time.monotonic()
        key = (ident, req.id)
        fingerprint = hashlib.sha256(payload).hexdigest()
        cached = self.replies.get(key)
        if cached is not None:  # a retry: same answer, the model does not run twice
            if cached[0] != fingerprint:
                self.send(ident, P.error_msg(P.ErrorCode.DUPLICATE_ID, "request id already used for another request", req.id))
            else:
                msg = P.decode(cached[2])
                msg["cached"] = True
                self.send(ident, msg)
            return
        if key in self.inflight:
            if self.inflight[key].fingerprint != fingerprint:
                self.send(ident, P.error_msg(P.ErrorCode.DUPLICATE_ID, "request id already in flight", req.id))
            return  # the original's reply answers the retry too
        if self.draining or not self.ready:
            self.send(ident, P.error_msg(P.ErrorCode.NOT_READY, "the daemon is shutting down" if self.draining
                                         else "the daemon is loading", req.id, retry_after_ms=1000))
            return
        waiting = len(self.queue) + len(self.seeing)
        if waiting >= self.cfg.queue_capacity:
            self.send(ident, P.error_msg(P.ErrorCode.OVERLOADED, f"{waiting} requests waiting; try again soon",
                                         req.id, retry_after_ms=250))
            return
        try:
            job = self._job(ident, req, fingerprint, now)
        except P.ProtocolError as e:
            self.send(ident, P.error_from(e))
            return
        (self.seeing if job.seeing is not None else self.queue).append(job)
        self.inflight[key] = job

    def _job(self, ident: bytes, req: P.Say, fingerprint: str, now: float) -> Job:
        if req.character is not None:
            try:
                character = load_character(req.character)
            except CharacterError as e:
                raise P.ProtocolError(P.ErrorCode.BAD_CHARACTER, str(e), req.id) from None
            self._remember(character)
        else:
            character = self.registered.get(req.character_ref)
            if character is None:
                raise P.ProtocolError(P.ErrorCode.UNKNOWN_CHARACTER,
                                      f"character_ref {req.character_ref!r} is not registered here: send `register` "
                                      "(or the sheet inline) first", req.id)
        history = ([Turn(t.speaker, t.text) for t in req.history] if req.history
                   else self.sessions.history(req.npc, req.session))
        scene: dict[str, Any] = dict(req.scene or {})
        vision_ms, seeing = 0.0, None
        if req.screenshot is not None and req.screenshot.read_text:
            from npc_brain.screen_text import available

            if not available():
                raise P.ProtocolError(P.ErrorCode.BAD_REQUEST, "this daemon cannot read on-screen text (screenshot."
                                      "read_text): install its ocr extra, pip install 'npc-brain[ocr]', or leave "
                                      "read_text out", req.id)
            seeing = self._see_pool_started().submit(self._see, req)
        elif req.screenshot is not None:
            t = time.perf_counter()
            scene = self._scene_of(req, lambda: self._see(req))
            vision_ms = (time.perf_counter() - t) * 1000
        deadline = now + req.deadline_ms / 1000 if req.deadline_ms else None
        return Job(ident, req, character, fingerprint, now, deadline, history, scene, vision_ms, seeing)

    def _see_pool_started(self) -> ThreadPoolExecutor:
        if self._see_pool is None:
            self._see_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="see", initializer=_lower_priority)
        return self._see_pool

    def _see(self, req: P.Say) -> dict[str, Any]:
        shot = req.screenshot
        return self.engine.see(shot.data, shot.format, shot.width, shot.height, engine_tags=req.scene,
                               read_text=shot.read_text)

    def _scene_of(self, req: P.Say, see) -> dict[str, Any]:
        """The scene from `see()`; an unusable screenshot is an error, or a warning when the game sent tags."""
        from npc_brain.vision import ImageError

        try:
            return see()
        except ImageError as e:
            if not req.scene:
                raise P.ProtocolError(P.ErrorCode(e.code), f"screenshot: {e}", req.id) from None
            log.warning("request %s: screenshot unusable (%s); using the engine's tags", req.id, e)
            return dict(req.scene)

    def collect_seen(self) -> None:
        """Queue the `say`s whose screenshot has been read in the helper thread."""
        for job in [j for j in self.seeing if j.seeing.done()]:
            self.seeing.remove(job)
            try:
                job.scene = self._scene_of(job.say, job.seeing.result)
            except P.ProtocolError as e:
                self.fail(job, e.code, e.message)
                continue
            except Exception as e:  # noqa: BLE001 - this request is answered, the loop goes on
                log.exception("internal error reading the screenshot of %s", job.say.id)
                self.fail(job, P.ErrorCode.INTERNAL, f"internal error: {type(e).__name__}")
                continue
            job.vision_ms = (time.monotonic() - job.received) * 1000
            job.seeing = None
            self.queue.append(job)

    # --- scheduling ------------------------------------------------------------------
    def expire(self) -> None:
        now = time.monotonic()
        for job in [j for j in self.seeing + list(self.queue) + self.active if j.deadline is not None and now > j.deadline]:
            self.fail(job, P.ErrorCode.TIMEOUT, f"deadline of {job.say.deadline_ms} ms passed")

    def admit(self) -> None:
        """Start queued lines while slots are free, until this turn's prefill budget is spent
        (at least one line per turn, so the queue always moves)."""
        t0 = time.monotonic()
        while self.queue and len(self.active) < self.cfg.max_active:
            self._admit_one()
            if (time.monotonic() - t0) * 1000 >= self.cfg.prefill_budget_ms:
                return

    def _admit_one(self) -> None:
        job = self.queue.popleft()
        s = job.say
        try:
            opts = self.engine.defaults.validated(s.options.as_dict())
            job.slot = self.engine.start(LineRequest(job.character, s.utterance, job.scene, tuple(job.history),
                                                     s.seed, opts))
        except (OptionsError, PromptError) as e:
            self.fail(job, P.ErrorCode.BAD_REQUEST, str(e))
            return
        except Exception as e:  # noqa: BLE001 - this request is answered, the loop goes on
            log.exception("internal error starting %s", s.id)
            self.fail(job, P.ErrorCode.INTERNAL, f"internal error: {type(e).__name__}")
            return
        job.slot.timings["queue_ms"] = (time.monotonic() - job.received) * 1000 - job.slot.timings["first_token_ms"]
        self.active.append(job)

    def decode_step(self) -> None:
        if not self.active:
            return
        self.engine.step([j.slot for j in self.active])
        for job in list(self.active):
            if job.slot.done:
                self.complete(job)
            elif job.say.stream:
                self.stream(job)

    def stream(self, job: Job) -> None:
        """Send each finished sentence once; the partials always add up to the final text."""
        c = job.character
        text = clean_line(job.slot.sampler.text, c.name, truncated=True)
        said = " ".join(job.say.utterance.lower().split())
        if not job.sent and (said.startswith(" ".join(text.lower().split())) or job.slot.offered):
            # it may be parroting the player, or be about to take an identity the player offered:
            # hold back so a retry is still possible
            return
        if (len(text) > len(job.sent) and text.startswith(job.sent) and not any(ch in job.slot.sampler.text for ch in "*([")
                and not claims_other_name(text[len(job.sent):], self.engine.sheet_text(c))):
            self.send(job.identity, P.partial_msg(job.say.id, job.seq, text[len(job.sent):]))
            job.seq += 1
            job.sent = text

    def complete(self, job: Job) -> None:
        rep = self.engine.finish(job.slot)
        self.generated += 1
        sheet_low = self.engine.sheet_text(job.character)
        unfit = not job.sent and not acceptable(rep.line, job.say.utterance, job.slot.offered, sheet_low)
        if unfit and job.retries < 2:
            # nothing streamed yet and the line is empty, a parrot or a taken identity: try the next seed
            job.retries += 1
            s = job.say
            opts = retry_options(self.engine.defaults.validated(s.options.as_dict()))
            job.slot = self.engine.start(LineRequest(job.character, s.utterance, job.scene, tuple(job.history),
                                                     rep.seed + 1, opts))
            return
        # The engine already ends a line before a sentence that loses the NPC's name (`cut_before_other_name`),
        # streamed or not, so what is out is always a prefix of the line it finishes.
        text = rep.line if rep.line.startswith(job.sent) else job.sent
        if not text or (unfit and not acceptable(text, "", job.slot.offered, sheet_low)):
            text = fallback_line(job.character)
        if job.say.stream and len(text) > len(job.sent):
            self.send(job.identity, P.partial_msg(job.say.id, job.seq, text[len(job.sent):]))
        t = rep.timings
        timings = {"queue_ms": t.get("queue_ms", 0.0), "vision_ms": job.vision_ms,
                   "prefill_ms": t["persona_ms"] + t["prefill_ms"], "decode_ms": t["decode_ms"],
                   "total_ms": (time.monotonic() - job.received) * 1000}
        msg = P.line_msg(job.say.id, text=text, emotion=rep.emotion, scene=job.scene, tokens=rep.tokens,
                         timings=timings, bundle_id=self.engine.bundle.bundle_id, seed=rep.seed)
        frame = self.send(job.identity, msg)
        if self.recorder is not None:
            self.recorder.line(job.say.id, job.character.to_dict(), job.say.utterance, job.scene, job.history,
                               rep.seed, job.say.options.as_dict(), text, rep.emotion, rep.tokens,
                               self.engine.bundle.bundle_id)
        self.sessions.append(job.say.npc, job.say.session, job.say.utterance, text)
        self.last_line_at = time.monotonic()
        if self.cfg.prefill_ahead:  # the history the next turn will show: the client's, or ours, plus this exchange
            said = [Turn("player", job.say.utterance), Turn("npc", text)]
            nxt = job.history + said if job.say.history else self.sessions.history(job.say.npc, job.say.session)
            self.ahead[(job.say.npc, job.say.session)] = (job.character, nxt)
            self.ahead.move_to_end((job.say.npc, job.say.session))
            while len(self.ahead) > self.cfg.prefill_ahead_max:
                self.ahead.popitem(last=False)
        self._forget(job)
        key = (job.identity, job.say.id)
        self.replies[key] = (job.fingerprint, time.monotonic(), frame)
        cutoff = time.monotonic() - P.IDEMPOTENCY_WINDOW_S
        while self.replies and (next(iter(self.replies.values()))[1] < cutoff or len(self.replies) > 50_000):
            self.replies.popitem(last=False)

    def _poll_ms(self, busy: bool) -> int:
        """How long the loop may wait for a message: not at all with lines to step, until the time to
        prefill ahead when that is the only work left, briefly while a screenshot is read off the loop."""
        if busy:
            return 0
        if self._may_prefill_ahead():
            return max(0, int((self._ahead_at() - time.monotonic()) * 1000))
        return 5 if self.seeing else 50

    def _may_prefill_ahead(self) -> bool:
        """Prefilling ahead waits for everything else (a queued line, a screenshot, a drain)."""
        return bool(self.ahead) and not (self.active or self.queue or self.seeing or self.draining)

    def _ahead_at(self) -> float:
        """When the daemon will have been idle long enough since the last line to prefill ahead."""
        return self.last_line_at + self.cfg.prefill_ahead_after_ms / 1000

    def prefill_ahead(self) -> None:
        """One conversation's next-turn history, prefilled and cached while the daemon is idle
        (`Engine.prefill_history`). Only a cache: a failure costs nothing but the time."""
        _, (character, history) = self.ahead.popitem(last=False)
        try:
            self.engine.prefill_history(character, history)
        except Exception:  # noqa: BLE001 - never worth a request, let alone the daemon
            log.exception("prefilling a conversation's history ahead failed")

    def fail(self, job: Job, code: P.ErrorCode, message: str) -> None:
        self.send(job.identity, P.error_msg(code, message, job.say.id))
        self._forget(job)

    def _forget(self, job: Job) -> None:
        if job in self.active:
            self.active.remove(job)
        if job in self.queue:
            self.queue.remove(job)
        if job in self.seeing:
            self.seeing.remove(job)
        self.inflight.pop((job.identity, job.say.id), None)


def _lower_priority() -> None:
    """The OCR helper thread yields the cores to decoding: a line being spoken should not wait on a sign
    being read (Linux nices threads one by one; elsewhere this does nothing)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npc-brain serve", description="Run the npc-brain daemon.")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    p.add_argument("--bind", default=DaemonConfig.bind)
    p.add_argument("--max-active", type=int, default=DaemonConfig.max_active)
    p.add_argument("--queue", type=int, default=DaemonConfig.queue_capacity, dest="queue_capacity")
    p.add_argument("--prefill-budget-ms", type=float, default=DaemonConfig.prefill_budget_ms,
                   help="prefill time spent starting queued lines between two decode steps (0: one line)")
    p.add_argument("--drain-timeout", type=float, default=DaemonConfig.drain_timeout_s)
    p.add_argument("--deterministic", action="store_true",
                   help="decode each NPC alone: same seed => same line regardless of load (slower under load)")
    p.add_argument("--no-prefill-ahead", action="store_false", dest="prefill_ahead",
                   help="do not prefill a conversation's last exchange while idle (to measure what it saves)")
    p.add_argument("--prefill-ahead-after-ms", type=float, default=DaemonConfig.prefill_ahead_after_ms,
                   help="idle time after a line before prefilling ahead")
    p.add_argument("--state-dir", type=Path, help="keep conversations on disk (survive restarts)")
    p.add_argument("--record", type=Path, help="append every line said to this JSONL file, for `npc-brain replay`")
    p.add_argument("--record-max-mb", type=float, default=256.0,
                   help="with --record: past this size the file rotates to FILE.1 (older: FILE.2 .. FILE.4)")
    p.add_argument("--curve-secret", type=Path)
    p.add_argument("--curve-clients", type=Path)
    p.add_argument("--threads", type=int)
    p.add_argument("--worker", action="store_true", help="serve behind `npc-brain broker` (needs --connect)")
    p.add_argument("--connect", help="the broker's backend address, e.g. tcp://10.0.0.5:5556")
    p.add_argument("--curve-client-secret", type=Path,
                   help="worker: its own secret key file (needed when --connect is not loopback)")
    p.add_argument("--curve-server-public", type=Path, help="worker: the broker's public key file")
    p.add_argument("--debug-hooks", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if a.record_max_mb <= 0:
        p.error("--record-max-mb must be more than 0")
    logging.basicConfig(level=a.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = DaemonConfig(bind=a.bind, max_active=a.max_active, queue_capacity=a.queue_capacity,
                       prefill_budget_ms=a.prefill_budget_ms, record=a.record, record_max_mb=a.record_max_mb,
                       drain_timeout_s=a.drain_timeout, deterministic=a.deterministic, state_dir=a.state_dir,
                       prefill_ahead=a.prefill_ahead, prefill_ahead_after_ms=a.prefill_ahead_after_ms,
                       curve_secret=a.curve_secret, curve_clients=a.curve_clients, debug_hooks=a.debug_hooks,
                       worker_connect=a.connect if a.worker else None,
                       curve_client_secret=a.curve_client_secret, curve_server_public=a.curve_server_public)
    if a.worker and not a.connect:
        print("error: --worker needs --connect BROKER_BACKEND_ADDRESS", file=sys.stderr)
        return 2
    why = cfg.curve_refusal()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    engine = Engine.load(a.bundle, threads=a.threads, deterministic=a.deterministic)
    return Daemon(engine, cfg).serve()


if __name__ == "__main__":
    sys.exit(main())
