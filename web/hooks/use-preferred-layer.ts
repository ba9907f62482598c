"use client";

import { useEffect, type RefObject } from "react";
import { preferredSpatialLayer } from "@/lib/video-layers";

/** Layouts settle (and windows finish resizing) before a tile's new size is worth an ask. */
const SETTLE_MS = 300;

export interface LayerTarget {
  consumerId: string | null;
  /** The consumer's spatial layers; fewer than 2 means nothing to choose. */
  spatialLayers: number;
}

/**
 * Tells `request` which simulcast layer fits the element: its rendered width in device pixels,
 * and the lowest layer while it is off screen or the tab is hidden. Debounced; the receiver
 * drops repeats of the same value.
 */
export function usePreferredLayer(
  ref: RefObject<HTMLElement | null>,
  { consumerId, spatialLayers }: LayerTarget,
  request: ((consumerId: string, spatialLayer: number) => void) | undefined,
): void {
  useEffect(() => {
    const element = ref.current;
    if (!element || !consumerId || !request || spatialLayers < 2) return;
    if (typeof ResizeObserver === "undefined" || typeof IntersectionObserver === "undefined") return;

    let width = element.getBoundingClientRect().width;
    let intersecting = true;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const schedule = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        const visible = intersecting && !document.hidden;
        request(consumerId, preferredSpatialLayer(width * window.devicePixelRatio, visible, spatialLayers));
      }, SETTLE_MS);
    };

    const resizes = new ResizeObserver((entries) => {
      const entry = entries.at(-1);
      if (entry) width = entry.contentRect.width;
      schedule();
    });
    const intersections = new IntersectionObserver((entries) => {
      const entry = entries.at(-1);
      if (entry) intersecting = entry.isIntersecting;
      schedule();
    });
    resizes.observe(element);
    intersections.observe(element);
    document.addEventListener("visibilitychange", schedule);
    schedule();
    return () => {
      if (timer) clearTimeout(timer);
      resizes.disconnect();
      intersections.disconnect();
      document.removeEventListener("visibilitychange", schedule);
    };
  }, [ref, consumerId, spatialLayers, request]);
}
