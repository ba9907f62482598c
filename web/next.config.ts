import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  output: "export",
  trailingSlash: true,
  images: { unoptimized: true },
  reactStrictMode: true,
  // `next dev` only: let pages opened as http://127.0.0.1:3000 load dev assets and HMR.
  allowedDevOrigins: ["127.0.0.1"],
};

export default nextConfig;
