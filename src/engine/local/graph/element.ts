// The element graph of the local engine: each element has at most one source per media kind
// and any number of sinks; packets travel source → sinks.
import type { RtpPacket } from 'werift';
import type { ElementId, MediaKind } from '../../types.js';
import type { LayeredPacket } from './simulcast.js';

export interface CodecInfo { mimeType: string; clockRate: number }

/** What travels between elements: RTP for audio/video, messages for data. */
export type MediaUnit =
  | { kind: 'audio' | 'video'; rtp: RtpPacket; codec: CodecInfo; origin: ElementId; layer?: LayeredPacket }
  | { kind: 'data'; message: string | Buffer; origin: ElementId };

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

  /**
   * The video this element outputs needs a keyframe. By default the request travels up the
   * source chain to where the video originates (an endpoint asks its client). `urgent` marks a
   * new sink (a switch), which should see a picture fast; other requests are merged more.
   */
  requestKeyframe(urgent: boolean): void {
    this.sources.get('video')?.requestKeyframe(urgent);
  }

  /** A new source was connected for `kind`: this sink needs a keyframe from it at once. */
  sourceChanged(kind: MediaKind): void {
    if (kind === 'video') this.sources.get('video')?.requestKeyframe(true);
  }

  release(): Promise<void> {
    this.released = true;
    return Promise.resolve();
  }
}

/** Kurento's PassThrough: whatever comes in goes out to all sinks. The session "proxy". */
export class PassThrough extends Element {
  accept(unit: MediaUnit): void { this.forward(unit); }
}
