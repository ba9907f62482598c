import type { Metadata, Viewport } from "next";
import type { ReactNode } from "react";
import { SiteHeader } from "@/components/layout/site-header";
import { Toaster } from "@/components/ui/sonner";
import { TooltipProvider } from "@/components/ui/tooltip";
import "./globals.css";

export const metadata: Metadata = {
  title: { default: "Rooms — live video rooms", template: "%s · Rooms" },
  description: "Start a video room in one click, invite others, or watch a room live over HLS.",
};

export const viewport: Viewport = { themeColor: "#111318", colorScheme: "dark" };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en" className="dark">
      <body className="min-h-dvh font-sans">
        <TooltipProvider delayDuration={300}>
          <SiteHeader />
          <main>{children}</main>
          <Toaster />
        </TooltipProvider>
      </body>
    </html>
  );
}
