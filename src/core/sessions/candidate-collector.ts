// Server-side candidate buffering (docs/API.md §7): while collecting, candidates are kept; when
// their author signals the end, or the trickle timeout fires, the collector completes once with
// everything it got. Candidates arriving afterwards are ignored, as in the original.
import type { CandidateInit } from '../../protocol/sdp.js';

export class CandidateCollector {
  private readonly candidates: CandidateInit[] = [];
  private timer: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(timeoutMs: number, private readonly onComplete: (candidates: CandidateInit[], reason: 'end' | 'timeout') => void) {
    this.timer = setTimeout(() => this.finish('timeout'), timeoutMs);
  }

  get done(): boolean { return this.finished; }
  get size(): number { return this.candidates.length; }

  add(candidate: CandidateInit): void {
    if (!this.finished) this.candidates.push(candidate);
  }

  end(): void { this.finish('end'); }

  /** Stops the timer without completing (the session is going away). */
  cancel(): void {
    this.finished = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private finish(reason: 'end' | 'timeout'): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.onComplete([...this.candidates], reason);
  }
}
