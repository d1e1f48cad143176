// The element graph of the local engine: each element has at most one source per media kind
// and any number of sinks; packets travel source → sinks.
import type { RtpPacket } from 'werift';
import type { ElementId, MediaKind } from '../types.js';

/** What travels between elements: RTP for audio/video, messages for data. */
export type MediaUnit = { kind: 'audio' | 'video'; rtp: RtpPacket } | { kind: 'data'; message: string | Buffer };

export abstract class Element {
  readonly sources = new Map<MediaKind, Element>();
  readonly sinks: Record<MediaKind, Set<Element>> = { audio: new Set(), video: new Set(), data: new Set() };
  released = false;

  constructor(readonly id: ElementId, readonly tag: string) {}

  /** Media arriving from this element's source. */
  abstract accept(unit: MediaUnit): void;

  /** Hands media to every sink of its kind. */
  protected forward(unit: MediaUnit): void {
    for (const sink of this.sinks[unit.kind]) sink.accept(unit);
  }

  /** Called when a new source is connected for `kind` (keyframe requests go here later). */
  sourceChanged(_kind: MediaKind): void {}

  release(): Promise<void> {
    this.released = true;
    return Promise.resolve();
  }
}

/** Kurento's PassThrough: whatever comes in goes out to all sinks. The session "proxy". */
export class PassThrough extends Element {
  accept(unit: MediaUnit): void { this.forward(unit); }
}
