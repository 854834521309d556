/**
 * Typed listeners for trainers' events (step, eval, checkpoint, end): what charts, progress bars and
 * forgetting trackers subscribe to. One implementation for every trainer.
 */
export class Emitter<Events> {
  private readonly listeners: { [E in keyof Events]?: ((e: Events[E]) => void)[] } = {};

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<E extends keyof Events>(event: E, listener: (e: Events[E]) => void): () => void {
    const list = (this.listeners[event] ??= []) as ((e: Events[E]) => void)[];
    list.push(listener);
    return () => {
      const i = list.indexOf(listener);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** Delivers to a copy of the list: a listener may unsubscribe while the event is delivered. */
  emit<E extends keyof Events>(event: E, payload: Events[E]): void {
    for (const l of [...((this.listeners[event] ?? []) as ((e: Events[E]) => void)[])]) l(payload);
  }
}
