"use client";

import { useCallback, useEffect, useState, useSyncExternalStore } from "react";
import { RoomSession } from "@/lib/room-session";

/**
 * A RoomSession for `roomId` (key the component by room id), closed (leaving the room) on
 * unmount. The snapshot re-renders the component on every change.
 */
export function useRoomSession(roomId: string) {
  // Constructing a session has no side effects: nothing connects before join().
  const [session] = useState(() => new RoomSession(roomId));

  useEffect(() => () => session.close(), [session]);

  const subscribe = useCallback((onChange: () => void) => session.on("change", onChange), [session]);
  const getSnapshot = useCallback(() => session.snapshot, [session]);
  const snapshot = useSyncExternalStore(subscribe, getSnapshot, getSnapshot);

  return { session, snapshot };
}
