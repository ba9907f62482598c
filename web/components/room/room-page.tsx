"use client";

import { useClientHref } from "@/hooks/use-client-href";
import { parseRoomLocation } from "@/lib/room-url";
import { InvalidRoom, PageSpinner } from "./status-screens";
import { Room } from "./room";

/** Entry of /stream/[roomId]: the real id comes from the browser URL, not from the build. */
export function RoomPage() {
  const href = useClientHref();
  if (!href) return <PageSpinner />;
  const location = parseRoomLocation(href);
  if (!location.valid) return <InvalidRoom roomId={location.roomId} />;
  return (
    <Room
      key={location.roomId}
      roomId={location.roomId}
      initialName={location.displayName}
      codec={location.codec}
      token={location.token}
    />
  );
}
