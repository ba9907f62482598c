import type { Metadata } from "next";
import { WatchRoom } from "@/components/watch/watch-room";

export const metadata: Metadata = { title: "Watch a room" };

export default function Page() {
  return <WatchRoom />;
}
