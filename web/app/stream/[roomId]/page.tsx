import type { Metadata } from "next";
import { RoomPage } from "@/components/room/room-page";

export const metadata: Metadata = { title: "Room" };

/**
 * Exported once as /stream/_/: the server serves that file for every valid /stream/<id>, and the
 * page reads the id from window.location.
 */
export function generateStaticParams() {
  return [{ roomId: "_" }];
}

export const dynamicParams = false;

export default function Page() {
  return <RoomPage />;
}
