"""UWS job kinds of the cutout service, run by Dramatiq workers."""
