import Link from "next/link";
import { Radio } from "lucide-react";

export function SiteHeader() {
  return (
    <header className="sticky top-0 z-40 border-b border-border/60 bg-background/80 backdrop-blur">
      <div className="mx-auto flex h-14 max-w-6xl items-center justify-between px-4">
        <Link href="/" className="flex items-center gap-2 font-semibold tracking-tight">
          <span className="flex size-7 items-center justify-center rounded-md bg-primary/15 text-primary">
            <Radio className="size-4" />
          </span>
          Rooms
        </Link>
        <nav className="flex items-center gap-1 text-sm">
          <Link href="/stream/" className="rounded-md px-3 py-1.5 text-muted-foreground hover:bg-accent hover:text-foreground">
            Stream
          </Link>
          <Link href="/watch/" className="rounded-md px-3 py-1.5 text-muted-foreground hover:bg-accent hover:text-foreground">
            Watch
          </Link>
        </nav>
      </div>
    </header>
  );
}
