import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

/** A failure shown where it happened, announced to screen readers. */
export function ErrorNote({ error }: { error: string | undefined }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error}
    </p>
  );
}

/** Loads with `load` on mount (and when `deps` change); re-runs every `everyMs` when given. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[] = [], everyMs?: number) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load()
      .then((d) => live && (setData(d), setError(undefined)))
      .catch((e: Error) => live && setError(e.message));
    const t = everyMs ? setTimeout(() => setTick((n) => n + 1), everyMs) : undefined;
    return () => {
      live = false;
      if (t) clearTimeout(t);
    };
  }, [...deps, tick]);
  return { data, error, reload: () => setTick((n) => n + 1) };
}

export function Field(props: { label: string; children: ComponentChildren; hint?: string; id: string }) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint ? (
        <small id={`${props.id}-hint`} class="hint">
          {props.hint}
        </small>
      ) : null}
    </div>
  );
}

export const STATES = ['QUEUED', 'SENDING', 'SENT', 'RETRYING', 'FAILED', 'BOUNCED'] as const;

/** MESSAGE_STATE_FAILED → "failed". */
export function stateName(s: unknown): string {
  return String(s ?? '')
    .replace(/^MESSAGE_STATE_/, '')
    .toLowerCase();
}

export function when(ts: unknown): string {
  if (typeof ts !== 'string') return '';
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
}
