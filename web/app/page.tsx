import Link from "next/link";
import { MonitorPlay, Users, Video, Zap } from "lucide-react";
import { Button } from "@/components/ui/button";

const FEATURES = [
  {
    icon: Users,
    title: "Rooms with live video",
    text: "Everyone in a room sees and hears everyone else, routed through a selective forwarding unit.",
  },
  {
    icon: Zap,
    title: "Low latency",
    text: "WebRTC end to end: audio and video arrive in a fraction of a second.",
  },
  {
    icon: MonitorPlay,
    title: "Watch over HLS",
    text: "Anyone with the room id can follow the room as a live HLS stream, no camera needed.",
  },
];

export default function HomePage() {
  return (
    <div className="mx-auto max-w-6xl px-4">
      <section className="flex flex-col items-center py-20 text-center sm:py-28">
        <span className="mb-6 inline-flex items-center gap-2 rounded-full border border-border bg-card px-3 py-1 text-xs text-muted-foreground">
          <span className="size-1.5 rounded-full bg-success" /> WebRTC · SFU · HLS
        </span>
        <h1 className="max-w-3xl text-4xl font-semibold tracking-tight sm:text-6xl">
          Live video rooms, <span className="text-primary">one click away</span>
        </h1>
        <p className="mt-5 max-w-xl text-base text-muted-foreground sm:text-lg">
          Start a room with your camera and microphone, share the link, and talk face to face.
          Or watch any room as a live stream.
        </p>
        <div className="mt-10 flex flex-col gap-3 sm:flex-row">
          <Button asChild size="lg">
            <Link href="/stream/">
              <Video /> Start a room
            </Link>
          </Button>
          <Button asChild size="lg" variant="outline">
            <Link href="/watch/">
              <MonitorPlay /> Watch a room
            </Link>
          </Button>
        </div>
      </section>
      <section className="grid gap-4 pb-24 sm:grid-cols-3">
        {FEATURES.map(({ icon: Icon, title, text }) => (
          <div key={title} className="rounded-xl border bg-card/60 p-6">
            <Icon className="mb-4 size-5 text-primary" />
            <h2 className="font-medium">{title}</h2>
            <p className="mt-2 text-sm text-muted-foreground">{text}</p>
          </div>
        ))}
      </section>
    </div>
  );
}
