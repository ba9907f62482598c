import { WifiOff } from "lucide-react";

/** On a tile whose video the server paused: our downlink does not fit even its lowest layer. */
export function BandwidthPausedBadge() {
  return (
    <span
      data-testid="bandwidth-paused"
      title="Your connection is too slow for this video right now; it resumes by itself."
      className="absolute right-2 top-2 flex items-center gap-1.5 rounded-md bg-black/55 px-2 py-1 text-xs font-medium text-white backdrop-blur"
    >
      <WifiOff className="size-3.5 text-warning" />
      Paused: low bandwidth
    </span>
  );
}
