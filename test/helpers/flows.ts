// Common session flows for tests and benchmarks.
import type { CandidateInit, CreateSessionRequest, NkMediaClient } from '../../src/client/index.js';
import { TestPeer } from './peer.js';

/**
 * The client offers (trickle both ways) into a new session and waits for the WebRTC
 * connection to come up. Returns the session id and the connected peer.
 */
export async function connectParked(client: NkMediaClient, extra: Partial<CreateSessionRequest> = {}): Promise<{ id: string; peer: TestPeer }> {
  const peer = new TestPeer();
  const offer = await peer.makeOffer();
  const pending: { obj_id?: string; c: CandidateInit }[] = [];
  let id: string | undefined;
  const off = client.onEvent((e) => {
    if (e.type !== 'candidate' || !e.body) return;
    if (id === undefined) pending.push({ obj_id: e.obj_id, c: e.body as CandidateInit });
    else if (e.obj_id === id) void peer.addCandidate(e.body as CandidateInit).catch(() => undefined);
  });
  try {
    const reply = await client.createSession({ type: 'park', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true, ...extra });
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
