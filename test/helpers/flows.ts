// Common session flows for tests and benchmarks.
import type { RtpPacket } from 'werift';
import type { CandidateInit, CreateSessionRequest, NkMediaClient } from '../../src/client/index.js';
import { TestPeer } from './peer.js';
import { eventually } from './server.js';

/** Waits until `peer` has received `n` more packets of `kind` tagged `tag`. */
export async function receives(peer: TestPeer, kind: 'audio' | 'video', tag: number, n = 10, ms = 5000): Promise<void> {
  const start = peer.from(kind, tag).length;
  await eventually(() => peer.from(kind, tag).length >= start + n, ms, `${kind} from ${tag.toString(16)}`);
}

/** Each peer gets the other's video and audio. */
export async function hearEachOther(a: TestPeer, b: TestPeer): Promise<void> {
  await receives(a, 'video', b.tag);
  await receives(a, 'audio', b.tag);
  await receives(b, 'video', a.tag);
  await receives(b, 'audio', a.tag);
}

/**
 * The client offers (trickle both ways) into a new session — its offer passed through `munge`
 * first — and waits for the WebRTC connection to come up. Returns the session id and the
 * connected peer.
 */
export async function connectParked(client: NkMediaClient, extra: Partial<CreateSessionRequest> = {}, munge: (sdp: string) => string = (sdp) => sdp, peer = new TestPeer()): Promise<{ id: string; peer: TestPeer }> {
  const offer = await peer.makeOffer();
  const pending: { obj_id?: string; c: CandidateInit }[] = [];
  let id: string | undefined;
  const off = client.onEvent((e) => {
    if (e.type !== 'candidate' || !e.body) return;
    if (id === undefined) pending.push({ obj_id: e.obj_id, c: e.body as CandidateInit });
    else if (e.obj_id === id) void peer.addCandidate(e.body as CandidateInit).catch(() => undefined);
  });
  try {
    const reply = await client.createSession({ type: 'park', offer: { sdp: munge(offer.sdp), trickle_ice: true }, wait_reply: true, ...extra });
    id = reply.session_id;
    await peer.takeAnswer(reply.answer!);
    for (const p of pending) if (p.obj_id === id) await peer.addCandidate(p.c).catch(() => undefined);
    for (const c of offer.candidates) await client.setCandidate(id, c);
    await client.setCandidateEnd(id);
    await peer.waitConnected();
    return { id, peer };
  } catch (err) {
    await peer.close();
    throw err;
  } finally {
    off();
  }
}

/** Sends everything `from` receives on to `to`'s server session, as its own media. */
export function relay(from: TestPeer, to: TestPeer): void {
  const seen = new Set<unknown>();
  const follow = (track: { kind: string; onReceiveRtp: { subscribe(f: (rtp: RtpPacket) => void): unknown } }) => {
    if (seen.has(track)) return;
    seen.add(track);
    const t = track.kind === 'audio' ? to.audio : to.video;
    track.onReceiveRtp.subscribe((rtp: RtpPacket) => {
      const codec = t?.sender.codec;
      if (!t || !codec) return;
      const copy = rtp.clone();
      copy.header.payloadType = codec.payloadType;
      copy.header.ssrc = t.sender.ssrc;
      void t.sender.sendRtp(copy).catch(() => undefined);
    });
  };
  for (const tr of from.pc.getTransceivers()) for (const track of tr.receiver.tracks) follow(track);
  from.pc.onTrack.subscribe((track) => follow(track));
}
