"use client";

import { useSyncExternalStore } from "react";

function subscribe(onChange: () => void): () => void {
  window.addEventListener("popstate", onChange);
  return () => window.removeEventListener("popstate", onChange);
}

/** `window.location.href` on the client, null while prerendering (static export). */
export function useClientHref(): string | null {
  return useSyncExternalStore(
    subscribe,
    () => window.location.href,
    () => null,
  );
}
