import type { Metadata } from "next";
import { StreamLobby } from "@/components/stream/stream-lobby";

export const metadata: Metadata = { title: "Start a room" };

export default function Page() {
  return <StreamLobby />;
}
