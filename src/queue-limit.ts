import { TaskdError } from './errors.js';
import type { Scheduler } from './scheduler.js';

/**
 * A queued task costs memory (about 650 bytes) and nothing else bounds how many a flood can queue.
 * Past the limit a new nid is refused, never dropped: Aegir still has it queued, so the reconciler
 * queues it once there is room. A nid already queued or running is not new and still answers as a
 * duplicate.
 */
export function refuseWhenQueueFull(scheduler: Pick<Scheduler, 'isActive' | 'queuedCount'>, maxQueued: number, nid: number): void {
  if (scheduler.isActive(nid)) return;
  if (scheduler.queuedCount >= maxQueued) throw new TaskdError('QUEUE_FULL');
}
