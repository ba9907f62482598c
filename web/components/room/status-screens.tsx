import Link from "next/link";
import { Clock, DoorClosed, KeyRound, Link2Off, Loader2, SearchX, WifiOff } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import type { AccessProblem } from "@/lib/access-token";
import { cn } from "@/lib/utils";

export function PageSpinner() {
  return (
    <div className="flex min-h-[60dvh] items-center justify-center text-muted-foreground">
      <Loader2 className="size-6 animate-spin" aria-label="Loading" />
    </div>
  );
}

export function InvalidRoom({ roomId }: { roomId: string }) {
  return (
    <div className="mx-auto flex min-h-[60dvh] max-w-md items-center px-4">
      <Card className="w-full">
        <CardHeader>
          <SearchX className="mb-2 size-6 text-destructive" />
          <CardTitle>Invalid room id</CardTitle>
          <CardDescription>
            {roomId ? (
              <>
                <code className="break-all rounded bg-muted px-1 py-0.5">{roomId}</code> is not a room
                id.{" "}
              </>
            ) : (
              "This link has no room id. "
            )}
            Room ids are 1–64 letters, digits, “-” or “_”.
          </CardDescription>
        </CardHeader>
        <CardContent>
          <Button asChild className="w-full">
            <Link href="/stream/">Start or join a room</Link>
          </Button>
        </CardContent>
      </Card>
    </div>
  );
}

export function ReconnectingBanner({ attempt }: { attempt: number }) {
  return (
    <div
      role="status"
      className="flex items-center justify-center gap-2 border-b border-warning/30 bg-warning/10 px-4 py-2 text-sm text-warning"
    >
      <WifiOff className="size-4" />
      Connection lost — reconnecting{attempt > 1 ? ` (attempt ${attempt})` : ""}…
      <Loader2 className="size-4 animate-spin" />
    </div>
  );
}

const ACCESS_TITLES: Record<AccessProblem, string> = {
  expired: "This link has expired",
  "wrong-room": "This link is for another room",
  invalid: "This link is not valid",
  missing: "This room needs an invite link",
};

const ACCESS_ICONS: Record<AccessProblem, typeof Clock> = {
  expired: Clock,
  "wrong-room": DoorClosed,
  invalid: Link2Off,
  missing: KeyRound,
};

/** Why the server will not (or did not) let this link in; shown instead of the pre-join form. */
export function AccessError({ reason }: { reason: AccessProblem }) {
  return (
    <div className="mx-auto flex min-h-[60dvh] max-w-md items-center px-4">
      <AccessErrorCard reason={reason} className="w-full" />
    </div>
  );
}

/** The card of <AccessError>, for pages that place it themselves (the watch page's player). */
export function AccessErrorCard({ reason, className }: { reason: AccessProblem; className?: string }) {
  const Icon = ACCESS_ICONS[reason];
  return (
    <Card role="alert" data-testid="access-error" data-reason={reason} className={cn("text-left", className)}>
      <CardHeader>
        <Icon className="mb-2 size-6 text-destructive" />
        <CardTitle>{ACCESS_TITLES[reason]}</CardTitle>
        <CardDescription>Ask the host for a new link.</CardDescription>
      </CardHeader>
      <CardContent>
        <Button asChild variant="secondary" className="w-full">
          <Link href="/">Back to start</Link>
        </Button>
      </CardContent>
    </Card>
  );
}
