"use client";

import { Label } from "@/components/ui/label";
import { Select, SelectContent, SelectItem, SelectTrigger, SelectValue } from "@/components/ui/select";
import type { DeviceOption } from "@/lib/local-media";

interface DevicePickerProps {
  id: string;
  label: string;
  devices: DeviceOption[];
  value: string;
  onChange: (deviceId: string) => void;
  disabled?: boolean;
}

export function DevicePicker({ id, label, devices, value, onChange, disabled }: DevicePickerProps) {
  const known = devices.some((device) => device.deviceId === value);
  return (
    <div className="grid gap-2">
      <Label htmlFor={id}>{label}</Label>
      <Select
        value={known ? value : ""}
        onValueChange={onChange}
        disabled={disabled || devices.length === 0}
      >
        <SelectTrigger id={id} aria-label={label}>
          <SelectValue placeholder={devices.length === 0 ? "None found" : `Choose ${label.toLowerCase()}`} />
        </SelectTrigger>
        <SelectContent>
          {devices.map((device) => (
            <SelectItem key={device.deviceId} value={device.deviceId}>
              {device.label}
            </SelectItem>
          ))}
        </SelectContent>
      </Select>
    </div>
  );
}
