import { Users } from "lucide-react";
import { Badge } from "@/components/ui/badge";

interface RoomHeaderProps {
  roomId: string;
  peerCount: number;
  reconnecting: boolean;
}

export function RoomHeader({ roomId, peerCount, reconnecting }: RoomHeaderProps) {
  return (
    <div className="mx-auto flex w-full max-w-7xl items-center justify-between gap-3 px-3 py-4 sm:px-6">
      <div className="min-w-0">
        <p className="text-xs uppercase tracking-wider text-muted-foreground">Room</p>
        <h1 className="truncate font-mono text-lg font-semibold" title={roomId}>
          {roomId}
        </h1>
      </div>
      <div className="flex items-center gap-2">
        {reconnecting ? (
          <Badge variant="warning">Reconnecting</Badge>
        ) : (
          <Badge variant="success">
            <span className="size-1.5 rounded-full bg-success" /> Live
          </Badge>
        )}
        <Badge variant="secondary">
          <Users /> {peerCount}
        </Badge>
      </div>
    </div>
  );
}
