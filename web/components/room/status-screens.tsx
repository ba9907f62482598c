import Link from "next/link";
import { Loader2, SearchX, WifiOff } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";

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
