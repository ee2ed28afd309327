"""The reliability campaign: faults on the running stack and hostile input to the accelerator, as one table.

    campaign.run(stack, profile, say) -> table.Report     faults (faults.py), then hostile input
    campaign.save(settings, report, out_dir)               JSON + Markdown, local and in the bucket
    table.PROFILES                                         "small" (CI, under 5 min) and "full"

The campaign kills and freezes the stack's own processes, so it runs against a stack this
machine supervises (robolake.stack.native), and brings every component back up when it ends.
"""
